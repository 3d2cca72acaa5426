/* test_schema.c — schema validation at fs_store_open: each invalid schema is
 * refused with FS_ERR_SCHEMA, a message naming the offending type or field,
 * and no file left behind; valid variants are accepted. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fixture.h"

/* A schema with one type `T` whose fields object is `F` (single quotes). */
#define ONE_TYPE(T, F) "{'version':1,'types':{'" T "':{'fields':" F "}}}"

typedef struct {
    const char *schema; /* single-quoted */
    const char *names;  /* the message must contain this ("" = anything) */
} bad_schema;

static const bad_schema BAD[] = {
    /* version */
    {"{'version':0,'types':{'task':{'fields':{'s':{'type':'string'}}}}}", "version"},
    {"{'version':-3,'types':{'task':{'fields':{'s':{'type':'string'}}}}}", "version"},
    {"{'version':'1','types':{'task':{'fields':{'s':{'type':'string'}}}}}", "version"},
    {"{'version':1.5,'types':{'task':{'fields':{'s':{'type':'string'}}}}}", "version"},
    {"{'types':{'task':{'fields':{'s':{'type':'string'}}}}}", "version"},
    /* types */
    {"{'version':1,'types':{}}", "types"},
    {"{'version':1}", "types"},
    {"{'version':1,'types':[]}", "types"},
    {"{'version':1,'types':{'task':'string'}}", "task"},
    {"{'version':1,'types':{'task_nofields':{}}}", "task_nofields"},
    /* type names */
    {ONE_TYPE("9task", "{'s':{'type':'string'}}"), "9task"},
    {ONE_TYPE("bad-type", "{'s':{'type':'string'}}"), "bad-type"},
    {ONE_TYPE("bad type", "{'s':{'type':'string'}}"), "bad type"},
    {ONE_TYPE("fs_task", "{'s':{'type':'string'}}"), "fs_task"},
    {ONE_TYPE("sqlite_task", "{'s':{'type':'string'}}"), "sqlite_task"},
    {ONE_TYPE("", "{'s':{'type':'string'}}"), ""},
    {ONE_TYPE("t\\u00e9che", "{'s':{'type':'string'}}"), ""},
    /* field names */
    {ONE_TYPE("task", "{'id':{'type':'string'}}"), "id"},
    {ONE_TYPE("task", "{'type':{'type':'string'}}"), "type"},
    {ONE_TYPE("task", "{'_hidden_field':{'type':'string'}}"), "_hidden_field"},
    {ONE_TYPE("task", "{'bad-field':{'type':'string'}}"), "bad-field"},
    {ONE_TYPE("task", "{'1st_field':{'type':'string'}}"), "1st_field"},
    {ONE_TYPE("task", "{'':{'type':'string'}}"), ""},
    /* field definitions */
    {ONE_TYPE("task", "{'when_done':{'type':'date'}}"), "when_done"},
    {ONE_TYPE("task", "{'when_done':{}}"), "when_done"},
    {ONE_TYPE("task", "{'when_done':'string'}"), "when_done"},
    {ONE_TYPE("task", "{'when_done':{'type':5}}"), "when_done"},
    {ONE_TYPE("task", "{'score_field':{'type':'int','merge':'max'}}"), "score_field"},
    {ONE_TYPE("task", "{'score_field':{'type':'string','merge':'counter'}}"), "score_field"},
    {ONE_TYPE("task", "{'score_field':{'type':'bool','merge':'counter'}}"), "score_field"},
    {ONE_TYPE("task", "{'score_field':{'type':'json','merge':'counter'}}"), "score_field"},
    {ONE_TYPE("task", "{'score_field':{'type':'set','merge':'counter'}}"), "score_field"},
    {ONE_TYPE("task", "{'label_field':{'type':'string','merge':'set'}}"), "label_field"},
    {ONE_TYPE("task", "{'label_field':{'type':'set','merge':'lww'}}"), "label_field"},
    {ONE_TYPE("task", "{'label_field':{'type':'set','merge':'server'}}"), "label_field"},
    {ONE_TYPE("task", "{'lines_field':{'type':'json','merge':'custom'}}"), "lines_field"},
    {ONE_TYPE("task", "{'lines_field':{'type':'json','merge':'custom','resolver':5}}"),
     "lines_field"},
    {ONE_TYPE("task", "{'qty_field':{'type':'int','merge':'server','device_writes':'no'}}"),
     "qty_field"},
    {ONE_TYPE("task", "{'qty_field':{'type':'int','colour':'red'}}"), "colour"},
    {ONE_TYPE("task", "{'qty_field':{'type':'int','merge':5}}"), "qty_field"},
    /* required and unknown keys in a type */
    {"{'version':1,'types':{'task':{'fields':{'s':{'type':'string'}},'required':['ghost_field']}}}",
     "ghost_field"},
    {"{'version':1,'types':{'task':{'fields':{'s':{'type':'string'}},'required':'s'}}}", "task"},
    {"{'version':1,'types':{'task':{'fields':{'s':{'type':'string'}},'required':[5]}}}", "task"},
    {"{'version':1,'types':{'task':{'fields':{'s':{'type':'string'}},'flavour':1}}}", "flavour"},
};

TEST(test_open_refuses_each_invalid_schema_naming_the_culprit) {
    size_t i;
    for (i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        char name[32];
        const char *path;
        const char *schema = Q(BAD[i].schema);
        fs_store *out = (fs_store *)SENTINEL;
        fs_status st;
        char msg[FS_TEST_MSG_MAX];
        snprintf(name, sizeof name, "s%u.db", (unsigned)i);
        path = test_path(name);
        st = fs_store_open(path, schema, NULL, &out);
        fs_test_copy_last_error(msg);
        if (st != FS_ERR_SCHEMA)
            fs_test_fail(__FILE__, __LINE__, "schema %s\n      returned %s (\"%s\"), expected "
                         "FS_ERR_SCHEMA", schema, fs_status_name(st), msg);
        else if (msg[0] == '\0' || strstr(msg, BAD[i].names) == NULL)
            fs_test_fail(__FILE__, __LINE__, "schema %s\n      message \"%s\" does not name \"%s\"",
                         schema, msg, BAD[i].names);
        if (out != NULL) {
            fs_test_fail(__FILE__, __LINE__, "schema %s: out_store not NULL", schema);
            if (out != (fs_store *)SENTINEL) fs_store_close(out);
        }
        if (access(path, F_OK) == 0)
            fs_test_fail(__FILE__, __LINE__, "schema %s: a refused open left %s behind", schema,
                         path);
    }
}

TEST(test_open_refuses_names_over_64_chars) {
    char *long_name = repeat_char('n', 65);
    char *s1 = strf("{\"version\":1,\"types\":{\"%s\":{\"fields\":{\"s\":{\"type\":\"string\"}}}}}",
                    long_name);
    char *s2 = strf("{\"version\":1,\"types\":{\"task\":{\"fields\":{\"%s\":{\"type\":\"string\"}}}}}",
                    long_name);
    fs_store *out = (fs_store *)SENTINEL;
    CHECK_STATUS(fs_store_open(test_path("a.db"), s1, NULL, &out), FS_ERR_SCHEMA);
    CHECK(out == NULL);
    out = (fs_store *)SENTINEL;
    CHECK_STATUS(fs_store_open(test_path("b.db"), s2, NULL, &out), FS_ERR_SCHEMA);
    CHECK(out == NULL);
    free(long_name);
    free(s1);
    free(s2);
}

TEST(test_open_accepts_names_of_64_chars) {
    char *name = repeat_char('n', 64);
    char *schema = strf("{\"version\":1,\"types\":{\"%s\":{\"fields\":{\"%s\":{\"type\":\"string\"}}}}}",
                        name, name);
    char *action = strf("{\"action\":\"a\",\"actor\":\"o\",\"type\":\"%s\",\"id\":\"1\","
                        "\"set\":{\"%s\":\"v\"}}", name, name);
    fs_store *s = open_store("a.db", schema, NULL);
    if (s != NULL) {
        json_decref(apply_ok(s, action));
        fs_store_close(s);
    }
    free(name);
    free(schema);
    free(action);
}

TEST(test_open_accepts_every_field_type_and_policy) {
    const char *schema = Q(
        "{'version':3,'types':{"
        "'_Item2':{'fields':{"
        "  'a_str':{'type':'string'},'b_int':{'type':'int','merge':'lww'},"
        "  'c_float_counter':{'type':'float','merge':'counter'},"
        "  'd_int_counter':{'type':'int','merge':'counter'},"
        "  'e_bool':{'type':'bool'},'f_json':{'type':'json'},"
        "  'g_set':{'type':'set','merge':'set'},'h_set':{'type':'set'},"
        "  'i_server':{'type':'string','merge':'server','device_writes':true},"
        "  'j_custom':{'type':'int','merge':'custom','resolver':'max_wins'},"
        "  'fs_like_field':{'type':'string'}},"
        " 'required':[]},"
        "'visit':{'fields':{'note':{'type':'string'}},'required':['note']}}}");
    fs_store *s = open_store("a.db", schema, NULL);
    json_t *r;
    REQUIRE(s != NULL);
    r = apply_ok(s, Q("{'action':'a','actor':'o','type':'_Item2','id':'1',"
                      "'set':{'a_str':'x','b_int':2,'e_bool':false,'f_json':{'k':[1]},"
                      "'i_server':'s','j_custom':4},"
                      "'inc':{'c_float_counter':0.5,'d_int_counter':2},"
                      "'add':{'g_set':['p'],'h_set':[1,2]}}"));
    CHECK(r != NULL);
    json_decref(r);
    r = apply_ok(s, Q("{'action':'a','actor':'o','type':'visit','id':'v1','set':{'note':'hi'}}"));
    CHECK(r != NULL);
    json_decref(r);
    fs_store_close(s);
}
