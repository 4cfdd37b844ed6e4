#ifndef PHINFER_EXPORT_H
#define PHINFER_EXPORT_H
/* Symbol visibility of the public API, for the C and the C++ headers. libphinfer.so is compiled with
   -fvisibility=hidden, so it exports only what is marked PHINFER_API: the C API (phinfer.h) and the
   public C++ classes and functions. PHINFER_HIDDEN keeps a public class's private implementation type
   (its nested Impl) out of the export table. Static linking ignores both. */
#if defined(__GNUC__) || defined(__clang__)
#define PHINFER_API __attribute__((visibility("default")))
#define PHINFER_HIDDEN __attribute__((visibility("hidden")))
#else
#define PHINFER_API
#define PHINFER_HIDDEN
#endif

#endif /* PHINFER_EXPORT_H */
