#ifndef XEN_AM_H_INCLUDED
#define XEN_AM_H_INCLUDED
/* placeholder */
#endif
