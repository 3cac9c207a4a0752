/* A tiny JSON reader: see json.h. */
#include "json.h"

#include <string.h>

static void ws(jdoc *d) {
    while (*d->p == ' ' || *d->p == '\t' || *d->p == '\r' || *d->p == '\n') d->p++;
}

static int node(jdoc *d, int type) {
    if (d->used >= J_MAX_NODES) { d->err = "too many JSON values"; return -1; }
    jnode *n = &d->n[d->used];
    memset(n, 0, sizeof *n);
    n->type = type; n->child = -1; n->next = -1;
    return d->used++;
}

static int string(jdoc *d, const char **s, int *len) {
    if (*d->p != '"') { d->err = "expected a string"; return -1; }
    const char *start = ++d->p;
    while (*d->p && *d->p != '"') {
        if ((unsigned char)*d->p < 0x20) { d->err = "control character in string"; return -1; }
        if (*d->p == '\\') {
            d->p++;
            if (!*d->p) break;
        }
        d->p++;
    }
    if (*d->p != '"') { d->err = "unterminated string"; return -1; }
    *s = start; *len = (int)(d->p - start);
    d->p++;
    return 0;
}

static int value(jdoc *d, int depth);

static int members(jdoc *d, int parent, int depth, int object) {
    char close = object ? '}' : ']';
    int last = -1;
    d->p++;
    ws(d);
    if (*d->p == close) { d->p++; return 0; }
    for (;;) {
        const char *key = NULL; int klen = 0;
        ws(d);
        if (object) {
            if (string(d, &key, &klen)) return -1;
            ws(d);
            if (*d->p != ':') { d->err = "expected ':'"; return -1; }
            d->p++;
        }
        int v = value(d, depth + 1);
        if (v < 0) return -1;
        d->n[v].key = key; d->n[v].klen = klen;
        if (last < 0) d->n[parent].child = v; else d->n[last].next = v;
        last = v;
        ws(d);
        if (*d->p == ',') { d->p++; continue; }
        if (*d->p == close) { d->p++; return 0; }
        d->err = object ? "expected ',' or '}'" : "expected ',' or ']'";
        return -1;
    }
}

static int value(jdoc *d, int depth) {
    if (depth > 16) { d->err = "nested too deep"; return -1; }
    ws(d);
    char c = *d->p;
    int i;
    if (c == '{' || c == '[') {
        if ((i = node(d, c == '{' ? J_OBJ : J_ARR)) < 0) return -1;
        return members(d, i, depth, c == '{') ? -1 : i;
    }
    if (c == '"') {
        if ((i = node(d, J_STR)) < 0) return -1;
        return string(d, &d->n[i].s, &d->n[i].len) ? -1 : i;
    }
    if (c >= '0' && c <= '9') {
        uint64_t v = 0;
        if ((i = node(d, J_NUM)) < 0) return -1;
        while (*d->p >= '0' && *d->p <= '9') {
            uint64_t digit = (uint64_t)(*d->p - '0');
            if (v > (UINT64_MAX - digit) / 10) { d->err = "integer out of range"; return -1; }
            v = v * 10 + digit;
            d->p++;
        }
        if (*d->p == '.' || *d->p == 'e' || *d->p == 'E') {
            d->err = "only integers are supported"; return -1;
        }
        d->n[i].num = v;
        return i;
    }
    if (!strncmp(d->p, "true", 4) || !strncmp(d->p, "false", 5)) {
        if ((i = node(d, J_BOOL)) < 0) return -1;
        d->n[i].num = (c == 't');
        d->p += (c == 't') ? 4 : 5;
        return i;
    }
    if (!strncmp(d->p, "null", 4)) {
        d->p += 4;
        return node(d, J_NULL);
    }
    d->err = c == '-' ? "negative numbers are not supported" : "unexpected character";
    return -1;
}

int json_parse(jdoc *doc, const char *text) {
    doc->used = 0; doc->p = text; doc->err = NULL;
    int root = value(doc, 0);
    if (root < 0) return -1;
    ws(doc);
    if (*doc->p) { doc->err = "trailing characters"; return -1; }
    return root;
}

int json_get(const jdoc *doc, int obj, const char *key) {
    if (obj < 0 || doc->n[obj].type != J_OBJ) return -1;
    size_t klen = strlen(key);
    for (int c = doc->n[obj].child; c >= 0; c = doc->n[c].next)
        if ((size_t)doc->n[c].klen == klen && !memcmp(doc->n[c].key, key, klen)) return c;
    return -1;
}

int json_word(const jdoc *doc, int node_i, uint64_t *out) {
    if (node_i < 0) return -1;
    const jnode *n = &doc->n[node_i];
    if (n->type == J_NUM) { *out = n->num; return 0; }
    if (n->type != J_STR || n->len < 3 || n->len > 18 || n->s[0] != '0' ||
        (n->s[1] != 'x' && n->s[1] != 'X'))
        return -1;
    uint64_t v = 0;
    for (int k = 2; k < n->len; k++) {
        char c = n->s[k];
        int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (digit < 0) return -1;
        v = v << 4 | (uint64_t)digit;
    }
    *out = v;
    return 0;
}

int json_streq(const jdoc *doc, int node_i, const char *s) {
    if (node_i < 0 || doc->n[node_i].type != J_STR) return 0;
    size_t len = strlen(s);
    return (size_t)doc->n[node_i].len == len && !memcmp(doc->n[node_i].s, s, len);
}
