/*
 * The core's settings table (src/core/xm_settings.c): every entry
 * documented (in the table and in README.md), defaults inside their
 * bounds, bad values reported and replaced by the default, good ones used.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "xm_settings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_table_documented(void **state)
{
    FILE *f = fopen(XM_SRCDIR "/README.md", "r");
    static char readme[1 << 20];
    size_t n;

    assert_non_null(f);
    n = fread(readme, 1, sizeof(readme) - 1, f);
    fclose(f);
    readme[n] = 0;
    for (int i = 0; i < XM_CFG_COUNT; i++) {
        const xm_cfg_var_t *v = xm_cfg_var(i);
        assert_non_null(v);
        assert_int_equal(strncmp(v->name, "XENMPI_", 7), 0);
        assert_true(v->doc && strlen(v->doc) > 10);
        if (!strstr(readme, v->name))
            fail_msg("%s is not in README.md", v->name);
        if (v->type != XM_CFG_STRING && v->dflt) {
            double d = strtod(v->dflt, NULL);
            assert_true(d >= v->min && d <= v->max);
        }
    }
    assert_null(xm_cfg_var(XM_CFG_COUNT));
}

static void test_values(void **state)
{
    unsetenv("XENMPI_RING_PAGES");
    assert_false(xm_cfg_is_set(XM_CFG_RING_PAGES));
    assert_int_equal(xm_cfg_uint(XM_CFG_RING_PAGES), 64);
    setenv("XENMPI_RING_PAGES", "8", 1);
    assert_true(xm_cfg_is_set(XM_CFG_RING_PAGES));
    assert_int_equal(xm_cfg_uint(XM_CFG_RING_PAGES), 8);
    const char *bad[] = { "abc", "8x", "999", "0", "-4", "" };
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("XENMPI_RING_PAGES", bad[i], 1);
        assert_false(xm_cfg_is_set(XM_CFG_RING_PAGES));
        assert_int_equal(xm_cfg_uint(XM_CFG_RING_PAGES), 64);
    }
    unsetenv("XENMPI_RING_PAGES");

    setenv("XENMPI_CONNECT_TIMEOUT", "0.5", 1);
    assert_true(xm_cfg_double(XM_CFG_CONNECT_TIMEOUT) == 0.5);
    setenv("XENMPI_CONNECT_TIMEOUT", "-1", 1);
    assert_true(xm_cfg_double(XM_CFG_CONNECT_TIMEOUT) == 60);
    setenv("XENMPI_CONNECT_TIMEOUT", "nan", 1);
    assert_true(xm_cfg_double(XM_CFG_CONNECT_TIMEOUT) == 60);
    unsetenv("XENMPI_CONNECT_TIMEOUT");

    /* no default: unset is "not given" */
    unsetenv("XENMPI_SIM_DOMID");
    assert_false(xm_cfg_is_set(XM_CFG_SIM_DOMID));
    setenv("XENMPI_SIM_DOMID", "0x7ff0", 1);   /* a reserved id */
    assert_false(xm_cfg_is_set(XM_CFG_SIM_DOMID));
    setenv("XENMPI_SIM_DOMID", "300", 1);
    assert_true(xm_cfg_is_set(XM_CFG_SIM_DOMID));
    assert_int_equal(xm_cfg_uint(XM_CFG_SIM_DOMID), 300);
    unsetenv("XENMPI_SIM_DOMID");

    unsetenv("XENMPI_HOST_ID");
    assert_null(xm_cfg_str(XM_CFG_HOST_ID));
    unsetenv("XENMPI_BACKEND");
    assert_string_equal(xm_cfg_str(XM_CFG_BACKEND), "auto");
    setenv("XENMPI_BACKEND", "sim", 1);
    assert_string_equal(xm_cfg_str(XM_CFG_BACKEND), "sim");
    unsetenv("XENMPI_BACKEND");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_documented),
        cmocka_unit_test(test_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
