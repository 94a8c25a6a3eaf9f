#include "mpidimpl.h"
/* placeholder */
