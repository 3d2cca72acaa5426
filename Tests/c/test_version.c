/* test_version.c — versions, status names, fs_free and the header's constants. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"

TEST(test_version_string_matches_header_macros) {
    char expected[64];
    snprintf(expected, sizeof expected, "%d.%d.%d", FS_VERSION_MAJOR, FS_VERSION_MINOR,
             FS_VERSION_PATCH);
    CHECK_STR_EQ(FS_VERSION, expected);
    REQUIRE(fs_version() != NULL);
    CHECK_STR_EQ(fs_version(), FS_VERSION);
    /* static storage: the same pointer every time */
    CHECK(fs_version() == fs_version());
}

TEST(test_abi_version_matches_header) {
    CHECK_INT_EQ(fs_abi_version(), FS_ABI_VERSION);
    CHECK_INT_EQ(FS_ABI_VERSION, 1);
}

TEST(test_library_is_loaded_under_its_abi_soname) {
    /* The test binary was linked against build/libfieldsync.so; the dynamic
     * linker must have recorded and loaded it as libfieldsync.so.1. */
    void *h = dlopen("libfieldsync.so.1", RTLD_LAZY | RTLD_NOLOAD);
    CHECK(h != NULL);
    if (h != NULL) {
        CHECK(dlsym(h, "fs_version") != NULL);
        dlclose(h);
    }
}

TEST(test_status_codes_keep_their_numbers) {
    CHECK_INT_EQ(FS_OK, 0);
    CHECK_INT_EQ(FS_ERR_ARG, 1);
    CHECK_INT_EQ(FS_ERR_JSON, 2);
    CHECK_INT_EQ(FS_ERR_SCHEMA, 3);
    CHECK_INT_EQ(FS_ERR_NOT_FOUND, 4);
    CHECK_INT_EQ(FS_ERR_CONFLICT, 5);
    CHECK_INT_EQ(FS_ERR_IO, 6);
    CHECK_INT_EQ(FS_ERR_FULL, 7);
    CHECK_INT_EQ(FS_ERR_CORRUPT, 8);
    CHECK_INT_EQ(FS_ERR_BUSY, 9);
    CHECK_INT_EQ(FS_ERR_UPGRADE_REQUIRED, 10);
    CHECK_INT_EQ(FS_ERR_CLOSED, 11);
    CHECK_INT_EQ(FS_ERR_INTERNAL, 12);
    CHECK_INT_EQ(FS_ERR_TOO_BIG, 13);
    CHECK_INT_EQ(FS_ERR_MISUSE, 14);
    CHECK_INT_EQ(sizeof(fs_status), 4);
}

TEST(test_status_name_names_every_code) {
    static const struct {
        fs_status code;
        const char *name;
    } names[] = {{FS_OK, "FS_OK"},
                 {FS_ERR_ARG, "FS_ERR_ARG"},
                 {FS_ERR_JSON, "FS_ERR_JSON"},
                 {FS_ERR_SCHEMA, "FS_ERR_SCHEMA"},
                 {FS_ERR_NOT_FOUND, "FS_ERR_NOT_FOUND"},
                 {FS_ERR_CONFLICT, "FS_ERR_CONFLICT"},
                 {FS_ERR_IO, "FS_ERR_IO"},
                 {FS_ERR_FULL, "FS_ERR_FULL"},
                 {FS_ERR_CORRUPT, "FS_ERR_CORRUPT"},
                 {FS_ERR_BUSY, "FS_ERR_BUSY"},
                 {FS_ERR_UPGRADE_REQUIRED, "FS_ERR_UPGRADE_REQUIRED"},
                 {FS_ERR_CLOSED, "FS_ERR_CLOSED"},
                 {FS_ERR_INTERNAL, "FS_ERR_INTERNAL"},
                 {FS_ERR_TOO_BIG, "FS_ERR_TOO_BIG"},
                 {FS_ERR_MISUSE, "FS_ERR_MISUSE"}};
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
    CHECK_STR_EQ(fs_status_name(15), "FS_ERR_UNKNOWN");
    CHECK_STR_EQ(fs_status_name(-1), "FS_ERR_UNKNOWN");
    CHECK_STR_EQ(fs_status_name(1000), "FS_ERR_UNKNOWN");
    CHECK_STR_EQ(fs_status_name(INT32_MIN), "FS_ERR_UNKNOWN");
    CHECK_STR_EQ(fs_status_name(INT32_MAX), "FS_ERR_UNKNOWN");
}

TEST(test_free_accepts_null) {
    fs_free(NULL);
    CHECK(1); /* reaching here is the test */
}

TEST(test_free_releases_malloced_memory) {
    /* fs_free is documented as equivalent to free(). */
    char *p = (char *)malloc(32);
    REQUIRE(p != NULL);
    strcpy(p, "not from the library");
    fs_free(p);
}

TEST(test_library_strings_can_be_released_with_free) {
    fs_store *s = open_task_store();
    char *out = NULL;
    REQUIRE(s != NULL);
    CHECK_OK(fs_store_stats(s, &out));
    free(out); /* "Equivalent to free()" */
    CHECK_OK(fs_store_close(s));
}

TEST(test_last_error_is_never_null) {
    CHECK(fs_last_error() != NULL);
    fs_status_name(FS_OK);
    CHECK(fs_last_error() != NULL);
}

TEST(test_size_limits_are_as_documented) {
    CHECK_INT_EQ(FS_MAX_JSON_BYTES, 1048576);
    CHECK_INT_EQ(FS_MAX_ID_BYTES, 256);
}
