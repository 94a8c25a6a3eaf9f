#ifndef XEN_PROGRESS_H_INCLUDED
#define XEN_PROGRESS_H_INCLUDED
/* placeholder */
#endif
