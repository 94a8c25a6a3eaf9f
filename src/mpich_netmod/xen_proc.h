#ifndef XEN_PROC_H_INCLUDED
#define XEN_PROC_H_INCLUDED
/* placeholder */
#endif
