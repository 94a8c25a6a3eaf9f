# UCX 1.13.1's gtest, the generic uct tests only, built against Debian's
# installed libucs/libuct.  Driven by test/ucx/run-gtest.sh:
#   make -f gtest.mk UCX=<patched copy of the UCX source> CONF=<dir of config.h> O=<out dir>
# config.h is `ucx_info -b`: the installed library's own configuration, so
# the internal structs the tests see have the library's layout.
UCX  ?= ucx
CONF ?= conf
O    ?= out

# gtest's own sources, test/gtest/common, and the uct tests that do not need
# InfiniBand, CUDA/ROCm, UCP, UCM or libucxperf
GTEST_SRCS = gtest gtest-death-test gtest-filepath gtest-port gtest-printers \
             gtest-test-part gtest-typed-test
COMMON_SRCS = main test_gtest_cmn mem_buffer test_helpers test_watchdog test
UCT_SRCS = test_amo test_amo_add_xor test_amo_and_or test_amo_cswap \
           test_amo_fadd_fxor test_amo_fand_for test_amo_swap test_event \
           test_fence test_flush test_many2one_am test_md test_mem test_mm \
           test_p2p_am test_p2p_err test_p2p_mix test_p2p_rma test_pending \
           test_progress test_uct_ep test_zcopy_comp uct_p2p_test uct_test \
           test_peer_failure v2/test_uct_query

OBJS = $(GTEST_SRCS:%=$(O)/googletest/%.o) $(COMMON_SRCS:%=$(O)/common/%.o) \
       $(UCT_SRCS:%=$(O)/uct/%.o)

CPPFLAGS = -I$(CONF) -DHAVE_CONFIG_H -I$(UCX)/src -I$(UCX)/test -I$(UCX)/test/gtest \
           -DTOP_SRCDIR=\"$(UCX)\" -DGTEST_UCM_HOOK_LIB_DIR=\"/nonexistent\"
CXXFLAGS = -std=c++11 -O1 -g0 -pthread -w
LDLIBS   = -luct -lucs -lucm -lpthread -ldl

$(O)/gtest: $(OBJS)
	$(CXX) -pthread -rdynamic -o $@ $(OBJS) $(LDLIBS)

$(O)/googletest/%.o: $(UCX)/test/gtest/common/googletest/%.cc
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c -o $@ $<
$(O)/common/%.o: $(UCX)/test/gtest/common/%.cc
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c -o $@ $<
$(O)/uct/%.o: $(UCX)/test/gtest/uct/%.cc
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c -o $@ $<
