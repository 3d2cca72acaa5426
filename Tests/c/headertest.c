/* headertest.c — include/fieldsync.h must compile alone, first, as C99 and as
 * C++11, with -Wall -Wextra -pedantic -Werror (libgit2's headertest idea). */
#include "fieldsync.h"

#if FS_ABI_VERSION != 1
#error "FS_ABI_VERSION changed: the SONAME must change with it"
#endif

/* The prototypes are what callers rely on: take each one's address with the
 * exact type the contract promises. */
typedef fs_status (*apply_fn)(fs_store *, const char *, char **);
typedef fs_status (*open_fn)(const char *, const char *, const char *, fs_store **);
typedef fs_status (*clock_fn)(fs_store *, int64_t (*)(void *), void *);

int fs_headertest_main(void);
int fs_headertest_main(void) {
    apply_fn a = fs_store_apply;
    open_fn o = fs_store_open;
    clock_fn c = fs_store_set_clock;
    fs_status st = FS_OK;
    return (a != 0) + (o != 0) + (c != 0) + (int)st + FS_MAX_JSON_BYTES / FS_MAX_ID_BYTES;
}
