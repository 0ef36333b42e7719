/* fuzz_profile_decode.c — libFuzzer entry for the profile decoder. Not a
 * unit test (the Makefile runs only tests/test_*.c).
 *
 *   clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined \
 *         native/tests/fuzz_profile_decode.c native/profile/[a-z]*.c -o /tmp/fuzz_profile
 *
 * Without libFuzzer, build with -DFUZZ_STANDALONE and pass files to replay.
 * Property checked: the decoder never crashes, and whatever it accepts
 * encodes into bytes that decode again to a store that encodes the same.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../profile/profile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *err = NULL;
    mfp_profile *p = mfp_profile_decode(data, size, &err);
    if (!p) {
        if (!err)
            __builtin_trap();
        return 0;
    }
    size_t l1, l2;
    uint8_t *b1 = mfp_profile_encode(p, &l1);
    mfp_profile *q = b1 ? mfp_profile_decode(b1, l1, &err) : NULL;
    uint8_t *b2 = q ? mfp_profile_encode(q, &l2) : NULL;
    if (b1 && (!q || (b2 && (l1 != l2 || memcmp(b1, b2, l1) != 0))))
        __builtin_trap();
    free(b1);
    free(b2);
    mfp_profile_free(q);
    mfp_profile_free(p);
    return 0;
}

#ifdef FUZZ_STANDALONE
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f)
            continue;
        static uint8_t buf[1 << 20];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, buf, n);
        LLVMFuzzerTestOneInput(copy, n);
        free(copy);
    }
    return 0;
}
#endif
