/* test_version.c — versions, status names, fs_free and the header's limits,
 * each compared with what the loaded library does. Every status code of the
 * header is also checked against fs_status_name, the Python binding and
 * docs/ABI.md by bindings/python/tests/test_status_codes.py. */
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

#define FS_STR_(x) #x
#define FS_STR(x) FS_STR_(x)

TEST(test_version_string_matches_header_macros) {
    char expected[64];
    int major = -1, minor = -1, patch = -1, used = 0;
    const char *v = fs_version();
    REQUIRE(v != NULL);
    snprintf(expected, sizeof expected, "%d.%d.%d", FS_VERSION_MAJOR, FS_VERSION_MINOR,
             FS_VERSION_PATCH);
    CHECK_STR_EQ(FS_VERSION, expected);
    CHECK_STR_EQ(v, FS_VERSION);
    /* "MAJOR.MINOR.PATCH" and nothing after it */
    CHECK(sscanf(v, "%d.%d.%d%n", &major, &minor, &patch, &used) == 3);
    CHECK_INT_EQ(used, (int)strlen(v));
    CHECK_INT_EQ(major, FS_VERSION_MAJOR);
    CHECK_INT_EQ(minor, FS_VERSION_MINOR);
    CHECK_INT_EQ(patch, FS_VERSION_PATCH);
    /* static storage: the same pointer every time */
    CHECK(fs_version() == v);
}

TEST(test_abi_version_matches_header) {
    CHECK_INT_EQ(fs_abi_version(), FS_ABI_VERSION);
}

TEST(test_library_is_loaded_under_its_abi_soname) {
    /* The test binary was linked against build/libfieldsync.so; the dynamic
     * linker must have recorded and loaded it as libfieldsync.so.FS_ABI_VERSION. */
    void *h = dlopen("libfieldsync.so." FS_STR(FS_ABI_VERSION), RTLD_LAZY | RTLD_NOLOAD);
    CHECK(h != NULL);
    if (h != NULL) {
        CHECK(dlsym(h, "fs_version") != NULL);
        dlclose(h);
    }
}

TEST(test_status_name_names_every_code) {
    /* Each name is the macro spelled by the preprocessor. */
#define NAMED(code) {code, #code}
    static const struct {
        fs_status code;
        const char *name;
    } names[] = {NAMED(FS_OK),           NAMED(FS_ERR_ARG),      NAMED(FS_ERR_JSON),
                 NAMED(FS_ERR_SCHEMA),   NAMED(FS_ERR_NOT_FOUND), NAMED(FS_ERR_CONFLICT),
                 NAMED(FS_ERR_IO),       NAMED(FS_ERR_FULL),     NAMED(FS_ERR_CORRUPT),
                 NAMED(FS_ERR_BUSY),     NAMED(FS_ERR_UPGRADE_REQUIRED),
                 NAMED(FS_ERR_CLOSED),   NAMED(FS_ERR_INTERNAL), NAMED(FS_ERR_TOO_BIG),
                 NAMED(FS_ERR_MISUSE),  NAMED(FS_ERR_AUTH)};
#undef NAMED
    size_t i;
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *got = fs_status_name(names[i].code);
        if (got == NULL || strcmp(got, names[i].name) != 0)
            fs_test_fail(__FILE__, __LINE__, "fs_status_name(%d) == \"%s\", expected \"%s\"",
                         (int)names[i].code, got ? got : "(NULL)", names[i].name);
    }
    /* static storage */
    CHECK(fs_status_name(FS_ERR_ARG) == fs_status_name(FS_ERR_ARG));
}

TEST(test_status_name_of_unknown_code_is_fs_err_unknown) {
    CHECK_STR_EQ(fs_status_name(FS_ERR_AUTH + 1), "FS_ERR_UNKNOWN");
    CHECK_STR_EQ(fs_status_name(-1), "FS_ERR_UNKNOWN");
    CHECK_STR_EQ(fs_status_name(1000), "FS_ERR_UNKNOWN");
    CHECK_STR_EQ(fs_status_name(INT32_MIN), "FS_ERR_UNKNOWN");
    CHECK_STR_EQ(fs_status_name(INT32_MAX), "FS_ERR_UNKNOWN");
}

/* Bytes the C allocator has handed out and not taken back (glibc). */
static size_t allocated_bytes(void) { return mallinfo2().uordblks; }

/* Under valgrind mallinfo2 reports nothing; there `make memcheck`'s leak
 * check is what fails when a string is not released. */
static int allocator_reports(void) {
    size_t before = allocated_bytes();
    void *probe = malloc(4096);
    int reports = probe != NULL && allocated_bytes() >= before + 4096;
    free(probe);
    return reports;
}

TEST(test_free_releases_malloced_memory_and_accepts_null) {
    /* fs_free is documented as equivalent to free(), NULL accepted. */
    int measured = allocator_reports();
    size_t held;
    char *p;
    fs_free(NULL);
    p = (char *)malloc(4096);
    REQUIRE(p != NULL);
    strcpy(p, "not from the library");
    held = allocated_bytes();
    fs_free(p); /* past the per-thread cache (1 KiB): its release shows */
    if (measured) CHECK(allocated_bytes() + 4096 <= held);
}

TEST(test_library_strings_can_be_released_with_free) {
    /* "Equivalent to free()": the library's strings come from malloc. The
     * record is larger than the allocator's per-thread cache takes (1 KiB),
     * so its release shows in mallinfo2. */
    fs_store *s = open_task_store();
    char *status = repeat_char('s', 8000);
    char *changes = strf("'set':{'status':'%s'}", status);
    char *out = NULL;
    int measured = allocator_reports();
    size_t held, size;
    REQUIRE(s != NULL);
    CHECK_OK(apply_status(s, act("T-1", changes)));
    CHECK_OK(fs_store_get(s, "task", "T-1", &out));
    REQUIRE(out != NULL);
    CHECK(strstr(out, status) != NULL);
    size = strlen(out) + 1;
    held = allocated_bytes();
    free(out);
    if (measured) CHECK(allocated_bytes() + size <= held);
    free(status);
    free(changes);
    CHECK_OK(fs_store_close(s));
}

TEST(test_last_error_is_never_null) {
    fs_store *s = (fs_store *)SENTINEL;
    CHECK(fs_last_error() != NULL);
    CHECK_STATUS(fs_store_open(NULL, TASK_SCHEMA, NULL, &s), FS_ERR_ARG);
    REQUIRE(fs_last_error() != NULL);
    CHECK(fs_last_error()[0] != '\0');
    CHECK_STR_EQ(fs_status_name(FS_OK), "FS_OK");
    CHECK(fs_last_error() != NULL);
}

TEST(test_size_limits_are_the_librarys) {
    /* What the header promises is what the library accepts, to the byte. */
    fs_store *s = open_task_store();
    const char *head = "{\"action\":\"edit\",\"actor\":\"op-1\",\"type\":\"task\",\"id\":\"T-1\","
                       "\"set\":{\"status\":\"open\"}}";
    char *pad = repeat_char(' ', FS_MAX_JSON_BYTES - strlen(head));
    char *largest = strf("%s%s", head, pad);
    char *over = strf("%s ", largest);
    char *id = repeat_char('i', FS_MAX_ID_BYTES);
    char *long_id = repeat_char('i', FS_MAX_ID_BYTES + 1);
    REQUIRE(s != NULL);
    CHECK_INT_EQ(strlen(largest), FS_MAX_JSON_BYTES);
    CHECK_OK(apply_status(s, largest));
    CHECK_STATUS(apply_status(s, over), FS_ERR_TOO_BIG);
    CHECK_OK(apply_status(s, act(id, "'set':{'status':'open'}")));
    CHECK_STATUS(apply_status(s, act(long_id, "'set':{'status':'open'}")), FS_ERR_TOO_BIG);
    free(pad);
    free(largest);
    free(over);
    free(id);
    free(long_id);
    CHECK_OK(fs_store_close(s));
}
