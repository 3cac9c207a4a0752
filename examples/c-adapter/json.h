/* A tiny JSON reader for one protocol line: no allocation, no external libraries.
 *
 * The line is parsed in place into a fixed pool of nodes.  Numbers are unsigned 64-bit
 * integers (the protocol never needs anything else); strings are kept raw (escapes are
 * skipped, not decoded: no key or value the adapter reads contains one).
 */
#ifndef PVHV_JSON_H
#define PVHV_JSON_H

#include <stddef.h>
#include <stdint.h>

enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

typedef struct {
    int type;
    uint64_t num;      /* J_NUM value, J_BOOL 0/1 */
    const char *s;     /* J_STR text (not terminated) */
    int len;           /* J_STR length */
    const char *key;   /* member name when inside an object */
    int klen;
    int child;         /* first child (J_ARR, J_OBJ), -1 if none */
    int next;          /* next sibling, -1 if none */
} jnode;

#define J_MAX_NODES 1024

typedef struct {
    jnode n[J_MAX_NODES];
    int used;
    const char *p;
    const char *err;
} jdoc;

/* Parse one JSON value filling the whole text; returns the root index or -1 (doc->err). */
int json_parse(jdoc *doc, const char *text);
/* Member ``key`` of object ``obj``, or -1. */
int json_get(const jdoc *doc, int obj, const char *key);
/* A register word: an integer or a 0x-prefixed hex string.  Returns 0 on success. */
int json_word(const jdoc *doc, int node, uint64_t *out);
/* Is node a string equal to s? */
int json_streq(const jdoc *doc, int node, const char *s);

#endif
