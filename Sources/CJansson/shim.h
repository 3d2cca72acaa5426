// jansson as Swift sees it: json_typeof is a macro, so expose it as a function.
#include <jansson.h>
static inline int fs_json_type(const json_t *j) { return (int)json_typeof(j); }
