#ifndef XEN_IMPL_H_INCLUDED
#define XEN_IMPL_H_INCLUDED
/* placeholder */
#endif
