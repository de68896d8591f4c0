/*
 * A stand-in for Windows' bcryptprimitives.dll, for running our Windows test binaries under
 * Wine 8 only (ci/windows-wine.sh copies it into a throwaway Wine prefix). It is never shipped
 * and never used on real Windows.
 *
 * Why: since Rust 1.78 the standard library gets its random bytes (HashMap seeds) from
 * ProcessPrng in bcryptprimitives.dll. Wine 8 has no such DLL, so every Rust .exe fails to
 * load there (STATUS_DLL_NOT_FOUND, c0000135). Wine does have bcrypt.dll, whose
 * BCryptGenRandom with BCRYPT_USE_SYSTEM_PREFERRED_RNG is the documented system generator, so
 * ProcessPrng here is a thin loop over it.
 *
 * Build: x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll \
 *            bcryptprimitives.c bcryptprimitives.def -lbcrypt
 */
#include <windows.h>
#include <bcrypt.h>

/*
 * Same contract as the Windows export: fill cbData bytes at pbData with cryptographically
 * random bytes; TRUE on success. Windows documents it as never failing; if bcrypt fails here
 * we say FALSE, and Rust's std then panics with a clear message instead of using weak bytes.
 */
BOOL WINAPI ProcessPrng(PBYTE pbData, SIZE_T cbData)
{
    /* BCryptGenRandom takes a ULONG (32-bit) count; SIZE_T is 64-bit, so go in slices. */
    const SIZE_T slice = 0x40000000; /* 1 GiB, well below ULONG's range */
    while (cbData > 0) {
        ULONG n = (ULONG)(cbData < slice ? cbData : slice);
        NTSTATUS status = BCryptGenRandom(NULL, pbData, n, BCRYPT_USE_SYSTEM_PREFERRED_RNG);
        if (!BCRYPT_SUCCESS(status)) {
            return FALSE;
        }
        pbData += n;
        cbData -= n;
    }
    return TRUE;
}
