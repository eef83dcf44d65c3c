/* The first stage of every bundle: a small static program at the front of the file.
 *
 * The common start, a bundle already installed in its root whose version is current and given no --bundle-*
 * option, is done here alone: read the start record the stub wrote at install (after every check had passed),
 * take the version's shared lock that --bundle-gc respects, and exec the runtime. The runtime is then the
 * process the user (or the service manager) started, and nothing is unpacked anywhere.
 *
 * Anything else, or any doubt (no record, a record that does not parse or does not match what this start
 * sees, a version not current, probation, an image still missing, a changed pin), hands over to the stub:
 * PyInstaller's bootloader, kept in this file's `bootloader` section, run from memory with this file's path as
 * its argv[0], so that it reads its archive (`pydata`) and the payload (`bundle`) from this file as before.
 *
 * A stub that carries its own C library (`--stub static`) has a `libc` section: glibc's loader and the libraries
 * the bootloader and the stub's Python need. The bootloader is then run by that loader, every file a memory file,
 * so the bundle starts where the system has no glibc, or an old one (the installed start needs none at all).
 *
 * docs/format.md ("1. The file", "The start record") specifies the sections and the record; stub/start_record.py
 * writes the record. Built static against musl (bundler/stubs/launcher.py), for every bundle architecture.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#define FORMAT_VERSION 4
#define HEADER_SIZE 104 /* the payload section's header (payload/layout.py) */
#define MAX_INDEX (16u << 20) /* a larger index is read by the stub */
#define MAX_RECORD (1u << 20)
#define RECORD_MAGIC "bundler-start-1"
#define ARGV0_VAR "_BUNDLE_ARGV0" /* the name the user started the bundle by, for the stub's messages */
/* stub/launch.py LIBC_FDS_VAR: the memory files of the carried C library, open in this process and its children
 * until the next launcher or the stub closes them */
#define LIBC_FDS_VAR "_BUNDLE_LIBC_FDS"
#define LIBC_MAGIC "BNDLIBC1" /* the `libc` section (bundler/stubs/static.py writes it) */
#define MAX_LIBS 64
#define EXIT_DAMAGED 3
#define EXIT_HOST 4

extern char **environ;

static const char *prog = "bundle";

struct section {
    uint64_t offset, size;
};

static uint64_t get(const unsigned char *p, int width) {
    uint64_t v = 0;
    for (int i = width - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int read_at(int fd, void *buf, size_t size, uint64_t offset) {
    size_t done = 0;
    while (done < size) {
        ssize_t n = pread(fd, (char *)buf + done, size - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        done += (size_t)n;
    }
    return 0;
}

/* The sections `bootloader`, `bundle` and `libc` of this little-endian ELF file (32 or 64 bit); 0 when readable. */
static int find_sections(int fd, struct section *boot, struct section *bundle, struct section *libc,
                         struct section *archive) {
    unsigned char h[64];
    if (read_at(fd, h, sizeof h, 0) || memcmp(h, "\177ELF", 4) || h[5] != 1) return -1;
    int wide = h[4] == 2;
    uint64_t shoff = wide ? get(h + 40, 8) : get(h + 32, 4);
    unsigned entsize = (unsigned)get(h + (wide ? 58 : 46), 2), count = (unsigned)get(h + (wide ? 60 : 48), 2);
    unsigned names_at = (unsigned)get(h + (wide ? 62 : 50), 2);
    if (entsize < (wide ? 64u : 40u) || count == 0 || count > 4096 || names_at >= count) return -1;
    unsigned char *table = malloc((size_t)entsize * count);
    if (!table || read_at(fd, table, (size_t)entsize * count, shoff)) return -1;
#define FIELD(i, at64, at32, w32) get(table + (size_t)(i) * entsize + (wide ? (at64) : (at32)), wide ? 8 : (w32))
    uint64_t names_off = FIELD(names_at, 24, 16, 4), names_size = FIELD(names_at, 32, 20, 4);
    if (names_size > 65536) return -1;
    char *names = malloc(names_size + 1);
    if (!names || read_at(fd, names, names_size, names_off)) return -1;
    names[names_size] = 0;
    boot->size = bundle->size = libc->size = archive->size = 0;
    for (unsigned i = 1; i < count; i++) {
        uint32_t name = (uint32_t)get(table + (size_t)i * entsize, 4);
        if (name >= names_size) continue;
        const char *n = names + name;
        struct section *s = !strcmp(n, "bootloader") ? boot
                            : !strcmp(n, "bundle")   ? bundle
                            : !strcmp(n, "libc")     ? libc
                            : !strcmp(n, "pydata")   ? archive
                                                     : 0;
        if (s) {
            s->offset = FIELD(i, 24, 16, 4);
            s->size = FIELD(i, 32, 20, 4);
        }
    }
#undef FIELD
    free(table);
    free(names);
    return boot->size ? 0 : -1;
}

static void die(int code, const char *what) {
    fprintf(stderr, "%s: error: %s\n", prog, what);
    exit(code);
}

static int copy_range(int self, struct section range, int out) {
    char buf[65536];
    uint64_t at = range.offset, left = range.size;
    while (left) {
        size_t n = left < sizeof buf ? (size_t)left : sizeof buf;
        if (read_at(self, buf, n, at) || write(out, buf, n) != (ssize_t)n) return -1;
        at += n;
        left -= n;
    }
    return 0;
}

/* A file with the bytes of `range` of this file, open for exec or for the loader: a memory file called `name`
 * (what `ps` and /proc/PID/maps show), or an unlinked temporary file where memory files cannot be made or run (old
 * kernels, vm.memfd_noexec). Closed on exec unless `keep`. */
static int memory_file(int self, struct section range, int memory, const char *name, int keep) {
    if (memory) {
        int fd = memfd_create(name, keep ? 0 : MFD_CLOEXEC);
        if (fd >= 0 && copy_range(self, range, fd)) {
            close(fd);
            return -1;
        }
        return fd;
    }
    const char *dir = getenv("TMPDIR");
    char temp[PATH_MAX];
    if (!dir || !*dir) dir = "/tmp";
    if (snprintf(temp, sizeof temp, "%s/.bundle-stub-XXXXXX", dir) >= (int)sizeof temp) return -1;
    int out = mkostemp(temp, O_CLOEXEC);
    if (out < 0) return -1;
    int run = open(temp, O_RDONLY | (keep ? 0 : O_CLOEXEC)); /* exec refuses a file still open for writing */
    unlink(temp);
    if (run < 0 || copy_range(self, range, out) || fchmod(out, 0500)) {
        if (run >= 0) close(run);
        close(out);
        return -1;
    }
    close(out);
    return run;
}

/* exec the program open as `fd` (close-on-exec). Where execveat is missing (qemu-user runs foreign bundles with
 * none), by its /proc path: the fd must then stay open across the exec for the kernel (or qemu) to open it. */
static void run_file(int fd, char **args) {
    syscall(SYS_execveat, fd, "", args, environ, AT_EMPTY_PATH);
    if (errno != ENOSYS) return;
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    fcntl(fd, F_SETFD, 0);
    execve(proc, args, environ);
}

/* The bytes PyInstaller's bootloader unpacks from its archive (`pydata`): every entry of its table of contents
 * but the Python modules and scripts it reads in place (bundler/build/glibc.py reads the same table); 0 when the
 * archive cannot be read (the bootloader then says why). */
static uint64_t unpacked_size(int self, struct section archive) {
    static const unsigned char magic[8] = {'M', 'E', 'I', 014, 013, 012, 013, 016};
    unsigned char tail[4096];
    size_t n = archive.size < sizeof tail ? (size_t)archive.size : sizeof tail;
    if (n < 88 || read_at(self, tail, n, archive.offset + archive.size - n)) return 0;
    size_t at = n - 88 + 1;
    while (at-- > 0)
        if (!memcmp(tail + at, magic, 8)) break;
    if (at == (size_t)-1) return 0;
#define BE32(p) (((uint32_t)(p)[0] << 24) | ((uint32_t)(p)[1] << 16) | ((uint32_t)(p)[2] << 8) | (uint32_t)(p)[3])
    uint64_t cookie_end = archive.size - n + at + 88, length = BE32(tail + at + 8);
    uint32_t toc_at = BE32(tail + at + 12), toc_size = BE32(tail + at + 16);
    if (length > cookie_end || toc_size > (4u << 20)) return 0;
    unsigned char *toc = malloc(toc_size ? toc_size : 1);
    uint64_t start = archive.offset + cookie_end - length, total = 0;
    if (!toc || read_at(self, toc, toc_size, start + toc_at)) {
        free(toc);
        return 0;
    }
    for (uint32_t i = 0; i + 18 <= toc_size;) {
        uint32_t size = BE32(toc + i);
        char type = (char)toc[i + 17];
        if (size < 18 || size > toc_size - i) break;
        if (type != 'm' && type != 'M' && type != 's' && type != 'o') total += BE32(toc + i + 12);
        i += size;
    }
#undef BE32
    free(toc);
    return total;
}

/* PyInstaller's bootloader unpacks the stub's Python into the first of $TMPDIR, $TEMP, $TMP (when set), /tmp,
 * /var/tmp and /usr/tmp where it can make a directory; it cannot load it from a noexec mount (it then exits 127
 * with the loader's message), and on a full one it exits 255 with a decompression error. Said here first, in one
 * line, with what to do. */
static void check_unpack_dir(uint64_t needed) {
    static const char *const vars[] = {"TMPDIR", "TEMP", "TMP"};
    static const char *const dirs[] = {"/tmp", "/var/tmp", "/usr/tmp"};
    const char *candidates[6];
    int n = 0;
    for (int i = 0; i < 3; i++) {
        const char *value = getenv(vars[i]);
        if (value && *value) candidates[n++] = value;
    }
    for (int i = 0; i < 3; i++) candidates[n++] = dirs[i];
    for (int i = 0; i < n; i++) {
        struct stat st;
        struct statvfs fs;
        if (stat(candidates[i], &st) || !S_ISDIR(st.st_mode) || access(candidates[i], W_OK | X_OK)) continue;
        if (statvfs(candidates[i], &fs)) return;
        char what[PATH_MAX + 300];
        uint64_t free_bytes = (uint64_t)fs.f_bavail * fs.f_frsize, margin = 1u << 20;
        if (!(fs.f_flag & ST_NOEXEC) && needed && free_bytes < needed + margin) {
            snprintf(what, sizeof what,
                     "%s has %.1f MB free, and this start needs about %.1f MB there to unpack the bundle's stub; free "
                     "some space there, or set TMPDIR to a directory with more",
                     candidates[i], free_bytes / 1e6, (needed + margin) / 1e6);
            die(EXIT_HOST, what);
        }
        if (!(fs.f_flag & ST_NOEXEC)) return;
        snprintf(what, sizeof what,
                 "%s is on a noexec mount, and this start needs to unpack the bundle's stub there; set TMPDIR to a "
                 "directory on an executable file system with about 20 MB free",
                 candidates[i]);
        die(EXIT_HOST, what);
    }
}

/* A memory file this process was given by the launcher before it (LIBC_FDS_VAR) and no longer needs: one it
 * made itself (a memory file, or the unlinked temporary file in its place), never another fd of the same number. */
static int is_ours(int fd) {
    char proc[64], target[PATH_MAX];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(proc, target, sizeof target - 1);
    if (n <= 0) return 0;
    target[n] = 0;
    return !strncmp(target, "/memfd:", 7) || strstr(target, "/.bundle-stub-") != 0;
}

/* The carried C library's memory files are left open across exec for the loader, so the bootloader's child (this
 * file again) inherits its parent's: closed here; the stub closes its own (stub/launch.py). */
static void close_inherited_libc(void) {
    const char *list = getenv(LIBC_FDS_VAR);
    if (!list) return;
    for (const char *at = list; *at;) {
        char *stop;
        long fd = strtol(at, &stop, 10);
        if (stop == at || fd < 3 || fd > INT_MAX) break;
        if (is_ours((int)fd)) close((int)fd);
        if (*stop != ',') break;
        at = stop + 1;
    }
    unsetenv(LIBC_FDS_VAR);
}

struct libc_files {
    int loader, fds[MAX_LIBS + 1], count;
    char loader_name[256], preload[MAX_LIBS * 32], list[(MAX_LIBS + 2) * 12];
};

static void close_libc(struct libc_files *c) {
    for (int i = 0; i < c->count; i++) close(c->fds[i]);
    c->count = 0;
}

/* The `libc` section's files as files the loader can open by their /proc/self/fd paths: the first is the loader,
 * the others go to its --preload list (it then finds each by its soname when the bootloader or Python asks for it).
 * 0 when every one is there. */
static int open_libc(int self, struct section libc, int memory, struct libc_files *c) {
    unsigned char h[12];
    uint64_t at = libc.offset, end = libc.offset + libc.size;
    c->count = 0;
    c->preload[0] = c->list[0] = 0;
    if (libc.size < sizeof h || read_at(self, h, sizeof h, at) || memcmp(h, LIBC_MAGIC, 8)) return -1;
    uint32_t files = (uint32_t)get(h + 8, 4);
    if (files < 2 || files > MAX_LIBS) return -1;
    at += sizeof h;
    for (uint32_t i = 0; i < files; i++) {
        unsigned char lens[4], sizes[8];
        char name[256];
        if (at + 4 > end || read_at(self, lens, 4, at)) goto bad;
        uint32_t len = (uint32_t)get(lens, 4);
        if (len == 0 || len >= sizeof name || at + 4 + len + 8 > end || read_at(self, name, len, at + 4)) goto bad;
        name[len] = 0;
        if (read_at(self, sizes, 8, at + 4 + len)) goto bad;
        struct section file = {at + 4 + len + 8, get(sizes, 8)};
        if (file.size > end - file.offset) goto bad;
        at = file.offset + file.size;
        int fd = memory_file(self, file, memory, name, 1);
        if (fd < 0) goto bad;
        c->fds[c->count++] = fd;
        char entry[32];
        snprintf(entry, sizeof entry, "%s%d", c->count > 1 ? "," : "", fd);
        strcat(c->list, entry);
        if (i == 0) {
            c->loader = fd;
            snprintf(c->loader_name, sizeof c->loader_name, "%s", name);
        } else {
            snprintf(entry, sizeof entry, "%s/proc/self/fd/%d", i > 1 ? " " : "", fd);
            strcat(c->preload, entry);
        }
    }
    return 0;
bad:
    close_libc(c);
    return -1;
}

/* Run the stub: PyInstaller's bootloader with this file's path as argv[0] (it then reads its archive and the
 * payload from this file), by the system's loader, or by the carried one with the libraries it carries.
 * `child`: the bootloader started this file again as its child; it goes back to it as it is. */
static void hand_over(int self, struct section boot, struct section libc, struct section archive, const char *path,
                      char **argv, int child) {
    size_t argc = 0;
    while (argv[argc]) argc++;
    char **args = calloc(argc + 7, sizeof *args);
    static struct libc_files carried;
    if (!args) die(EXIT_HOST, "out of memory starting the stub");
    if (!child && argv[0] && setenv(ARGV0_VAR, argv[0], 1)) die(EXIT_HOST, "out of memory starting the stub");
    if (!child) check_unpack_dir(unpacked_size(self, archive));
    if (libc.size && access("/proc/self/fd", X_OK))
        die(EXIT_HOST, "this bundle's stub carries its own C library, which it loads through /proc: mount /proc "
                       "(mount -t proc proc /proc) and start the bundle again");
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    int saved = 0;
    for (int memory = 1; memory >= 0; memory--) {
        int fd = memory_file(self, boot, memory, base, libc.size != 0);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        size_t lead = 0;
        int program = fd;
        char boot_path[64], list[sizeof carried.list + 16];
        if (libc.size) {
            if (open_libc(self, libc, memory, &carried)) {
                saved = errno ? errno : EINVAL;
                close(fd);
                continue;
            }
            snprintf(boot_path, sizeof boot_path, "/proc/self/fd/%d", fd);
            snprintf(list, sizeof list, "%s,%d", carried.list, fd);
            if (setenv(LIBC_FDS_VAR, list, 1)) die(EXIT_HOST, "out of memory starting the stub");
            args[lead++] = carried.loader_name;
            args[lead++] = "--preload";
            args[lead++] = carried.preload;
            args[lead++] = "--argv0";
            args[lead++] = (char *)path;
            args[lead++] = boot_path;
            program = carried.loader;
        } else {
            args[lead++] = (char *)path;
        }
        for (size_t i = 1; i < argc; i++) args[lead + i - 1] = argv[i];
        args[lead + (argc ? argc - 1 : 0)] = 0;
        run_file(program, args);
        saved = errno;
        close_libc(&carried);
        close(fd);
    }
    if (saved == ENOENT && !libc.size)  /* the file is there: the loader it names is not */
        die(EXIT_HOST, "this system has no glibc where the bundle's stub looks for it (a musl or busybox system?); "
                       "make the bundle with --stub static, which carries its own C library");
    char what[PATH_MAX + 200];
    snprintf(what, sizeof what,
             "cannot start the bundle's stub from memory or from TMPDIR: %s; set TMPDIR to a writable directory "
             "that allows exec",
             strerror(saved));
    die(EXIT_HOST, what);
}

/* --- the start record and what it must match ------------------------------------------------------------- */

/* The top-level "name" of the content index (canonical JSON: sorted keys, no spaces); 0 if not found plainly. */
static int index_name(const char *doc, size_t size, char *out, size_t room) {
    size_t i = 0;
    int depth = 0, expect_key = 0;
    if (size == 0 || doc[0] != '{') return -1;
    while (i < size) {
        char c = doc[i];
        if (c == '"') {
            size_t start = ++i;
            while (i < size && doc[i] != '"') i += doc[i] == '\\' ? 2 : 1;
            if (i >= size) return -1;
            size_t len = i - start;
            i++;
            if (depth == 1 && expect_key && i < size && doc[i] == ':' && len == 4 && !memcmp(doc + start, "name", 4)) {
                if (++i >= size || doc[i] != '"') return -1;
                size_t vs = ++i;
                while (i < size && doc[i] != '"') {
                    char v = doc[i];
                    if (!((v >= 'a' && v <= 'z') || (v >= '0' && v <= '9') || v == '-')) return -1;
                    i++;
                }
                if (i >= size || i == vs || i - vs >= room) return -1;
                memcpy(out, doc + vs, i - vs);
                out[i - vs] = 0;
                return 0;
            }
            expect_key = 0;
            continue;
        }
        if (c == '{' || c == '[') depth++;
        if (c == '}' || c == ']') depth--;
        expect_key = depth == 1 && (c == '{' || c == ',');
        i++;
    }
    return -1;
}

/* os.path.abspath of `path`, as the stub names its root (stub/root.py `Installation`): from the working directory
 * when relative, without empty, "." or ".." parts; 0 when done. A root named with a trailing slash, say, would
 * otherwise never match the record. */
static int absolute(const char *path, char *out, size_t room) {
    char joined[2 * PATH_MAX];
    int n;
    if (path[0] == '/') {
        if (path[1] == '/' && path[2] != '/') return -1; /* POSIX keeps a leading "//": left to the stub */
        n = snprintf(joined, sizeof joined, "%s", path);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) return -1;
        n = snprintf(joined, sizeof joined, "%s/%s", cwd, path);
    }
    if (n <= 0 || (size_t)n >= sizeof joined) return -1;
    size_t at = 0;
    for (char *part = strtok(joined, "/"); part; part = strtok(0, "/")) {
        if (!strcmp(part, ".")) continue;
        if (!strcmp(part, "..")) {
            while (at > 0 && out[--at] != '/') continue;
            continue;
        }
        size_t len = strlen(part);
        if (at + len + 2 > room) return -1;
        out[at++] = '/';
        memcpy(out + at, part, len);
        at += len;
    }
    if (at == 0) out[at++] = '/';
    out[at] = 0;
    return 0;
}

/* stub/install.py `check_root` along one chain: `path` and every directory above it owned by root or by this user,
 * and writable by nobody else but for a sticky directory above the root (/tmp); 0 when it holds. */
static int chain_is_ours(const char *path) {
    char at[PATH_MAX];
    uid_t uid = geteuid();
    if (snprintf(at, sizeof at, "%s", path) >= (int)sizeof at) return -1;
    for (int root_itself = 1;; root_itself = 0) {
        struct stat st;
        if (lstat(at, &st) || (st.st_uid != 0 && st.st_uid != uid)) return -1;
        int sticky_above = (st.st_mode & S_ISVTX) && !root_itself;
        if (!S_ISLNK(st.st_mode) && (st.st_mode & (S_IWGRP | S_IWOTH)) && !sticky_above) return -1;
        if (!strcmp(at, "/")) return 0;
        char *slash = strrchr(at, '/');
        slash[slash == at ? 1 : 0] = 0;
    }
}

/* The root another user could swap or fill is refused by the stub at every start: left to it. */
static int root_is_ours(const char *root) {
    char real[PATH_MAX];
    if (!realpath(root, real) || chain_is_ours(root)) return -1;
    return strcmp(real, root) ? chain_is_ours(real) : 0;
}

/* The install root as stub/root.py `default_root` gives it; 0 when it could be told without doubt. */
static int default_root(const char *name, char *out, size_t room) {
    const char *dir = getenv("BUNDLE_DIR");
    char given[PATH_MAX];
    int n;
    if (dir && *dir) {
        n = snprintf(given, sizeof given, "%s", dir);
    } else if (geteuid() == 0) {
        n = snprintf(given, sizeof given, "/var/lib/%s", name);
    } else {
        const char *base = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
        if (base && *base)
            n = snprintf(given, sizeof given, "%s/%s", base, name);
        else if (home && *home && home[0] == '/')
            n = snprintf(given, sizeof given, "%s/.local/share/%s", home, name);
        else
            return -1;
    }
    return n > 0 && (size_t)n < sizeof given ? absolute(given, out, room) : -1;
}

static int join(char *out, size_t room, const char *a, const char *b, const char *c) {
    int n = snprintf(out, room, "%s/%s%s%s", a, b, c ? "/" : "", c ? c : "");
    return n > 0 && (size_t)n < room ? 0 : -1;
}

/* stub/start_record.py `fingerprint`: what a change of the keys pinned in `dir` changes. */
static void fingerprint(const char *dir, char *out, size_t room) {
    struct stat st;
    if (stat(dir, &st)) {
        snprintf(out, room, errno == ENOENT ? "absent" : "unreadable");
        return;
    }
    snprintf(out, room, "%llu:%llu:%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
             (unsigned long long)st.st_mtim.tv_sec * 1000000000ull + (unsigned long long)st.st_mtim.tv_nsec,
             (unsigned long long)st.st_ctim.tv_sec * 1000000000ull + (unsigned long long)st.st_ctim.tv_nsec);
}

struct reader {
    char *at, *end;
};

static char *field(struct reader *r) {
    char *start = r->at, *nul = r->at < r->end ? memchr(r->at, 0, (size_t)(r->end - r->at)) : 0;
    if (!nul) return 0;
    r->at = nul + 1;
    return start;
}

static long count(struct reader *r) {
    char *text = field(r), *stop;
    if (!text || !*text) return -1;
    long n = strtol(text, &stop, 10);
    return *stop || n < 0 || n > 4096 ? -1 : n;
}

static int exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

static int is_pyinstaller_var(const char *entry) {
    static const char *const vars[] = {"_PYI_ARCHIVE_FILE=", "_PYI_APPLICATION_HOME_DIR=",
                                       "_PYI_PARENT_PROCESS_LEVEL=", "_PYI_LINUX_PROCESS_NAME=",
                                       "_PYI_SPLASH_IPC=", "_MEIPASS2=", ARGV0_VAR "=", "BUNDLE_EXECUTABLE=", 0};
    for (int i = 0; vars[i]; i++)
        if (!strncmp(entry, vars[i], strlen(vars[i]))) return 1;
    return 0;
}

static int same_name(const char *entry, const char *other) {
    const char *eq = strchr(other, '=');
    size_t len = eq ? (size_t)(eq - other + 1) : strlen(other);
    return !strncmp(entry, other, len);
}

/* The fast start: exec the installed runtime, or return (everything closed) for the stub to do the start. */
static void start_installed(int self, struct section bundle, const char *path, char **argv) {
    unsigned char h[HEADER_SIZE];
    if (bundle.size < HEADER_SIZE || read_at(self, h, HEADER_SIZE, bundle.offset)) return;
    if (memcmp(h, "BUNDLER\0", 8) || get(h + 8, 4) != FORMAT_VERSION) return;
    uint64_t index_size = get(h + 16, 8);
    if (index_size == 0 || index_size > MAX_INDEX) return;
    char id[65], name[256], root[PATH_MAX], where[PATH_MAX], current[128];
    for (int i = 0; i < 32; i++) snprintf(id + 2 * i, 3, "%02x", h[40 + i]);
    char *index = malloc(index_size);
    if (!index || read_at(self, index, index_size, bundle.offset + HEADER_SIZE)) return;
    int named = index_name(index, index_size, name, sizeof name);
    free(index);
    if (named || default_root(name, root, sizeof root) || root_is_ours(root)) return;

    /* current must be this version, with no probation to count and no refusal to apply */
    ssize_t n;
    if (join(where, sizeof where, root, "current", 0)) return;
    if ((n = readlink(where, current, sizeof current - 1)) != 64) return;
    current[n] = 0;
    if (strcmp(current, id)) return;
    if (join(where, sizeof where, root, ".probation", 0) || exists(where)) return;
    if (join(where, sizeof where, root, ".rolled-back", id) || exists(where)) return;

    /* Taken before looking, kept across exec: --bundle-gc never removes a version in use. */
    if (join(where, sizeof where, root, ".locks", id)) return;
    int lock = open(where, O_RDWR | O_CREAT | O_NOFOLLOW, 0644);
    if (lock < 0) return;
    if (flock(lock, LOCK_SH)) goto out;

    if (join(where, sizeof where, root, id, ".bundle-installed") || !exists(where)) goto out;
    if (join(where, sizeof where, root, id, ".bundle-start")) goto out;
    int fd = open(where, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) goto out;
    struct stat st;
    char *record = 0;
    if (fstat(fd, &st) == 0 && (st.st_uid == 0 || st.st_uid == geteuid()) && !(st.st_mode & (S_IWGRP | S_IWOTH)) &&
        st.st_size > 0 && (uint64_t)st.st_size <= MAX_RECORD && (record = malloc((size_t)st.st_size)))
        if (read_at(fd, record, (size_t)st.st_size, 0)) {
            free(record);
            record = 0;
        }
    close(fd);
    if (!record) goto out;

    struct reader r = {record, record + st.st_size};
    char *magic = field(&r), *rid = field(&r), *rroot = field(&r);
    if (!magic || strcmp(magic, RECORD_MAGIC) || !rid || strcmp(rid, id) || !rroot || strcmp(rroot, root)) goto out;
    char seen[128], pins[PATH_MAX];
    const char *pinned[2] = {pins, "/etc/bundler/trusted-keys"};
    if (join(pins, sizeof pins, root, ".trusted-keys", 0)) goto out;
    for (int i = 0; i < 2; i++) {
        char *want = field(&r);
        fingerprint(pinned[i], seen, sizeof seen);
        if (!want || strcmp(want, seen)) goto out;
    }
    long needed = count(&r);
    if (needed < 0) goto out;
    for (long i = 0; i < needed; i++) {
        char *p = field(&r);
        if (!p || !exists(p)) goto out; /* an image the online variant left out, not there (any more) */
    }
    long nargs = count(&r);
    if (nargs < 1) goto out;
    size_t extra = 0;
    while (argv[1 + extra]) extra++;
    char **args = calloc((size_t)nargs + extra + 1, sizeof *args);
    if (!args) goto out;
    for (long i = 0; i < nargs; i++)
        if (!(args[i] = field(&r))) goto out;
    for (size_t i = 0; i < extra; i++) args[nargs + i] = argv[1 + i];
    long nvars = count(&r);
    if (nvars < 0) goto out;
    size_t nenv = 0;
    while (environ[nenv]) nenv++;
    char **env = calloc(nenv + (size_t)nvars + 2, sizeof *env);
    if (!env) goto out;
    char **set = calloc((size_t)nvars + 1, sizeof *set);
    if (!set) goto out;
    for (long i = 0; i < nvars; i++)
        if (!(set[i] = field(&r)) || !strchr(set[i], '=')) goto out;
    char *end = field(&r);
    if (!end || strcmp(end, "end") || r.at != r.end) goto out;
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++) {
        int replaced = is_pyinstaller_var(environ[i]);
        for (long j = 0; j < nvars && !replaced; j++) replaced = same_name(environ[i], set[j]);
        if (!replaced) env[k++] = environ[i];
    }
    for (long j = 0; j < nvars; j++) env[k++] = set[j];
    size_t room = strlen(path) + sizeof "BUNDLE_EXECUTABLE=";
    if (!(env[k] = malloc(room))) goto out;
    snprintf(env[k++], room, "BUNDLE_EXECUTABLE=%s", path);
    env[k] = 0;
    close(self);
    execve(args[0], args, env);
    /* not run (gone, not executable, a noexec root): the stub says why, or repairs */
out:
    close(lock);
}

int main(int argc, char **argv) {
    (void)argc;
    close_inherited_libc();
    if (argv[0] && *argv[0]) prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n > 0) {
        path[n] = 0;
    } else if (!argv[0] || !strchr(argv[0], '/') || !realpath(argv[0], path)) {
        die(EXIT_HOST, "cannot find this bundle's own file: mount /proc, or start it by a path that holds a '/'");
    }
    int self = open(path, O_RDONLY | O_CLOEXEC);
    if (self < 0) die(EXIT_HOST, "cannot read this bundle's own file; check its permissions (it must be readable)");
    struct section boot, bundle, libc, archive;
    if (find_sections(self, &boot, &bundle, &libc, &archive))
        die(EXIT_DAMAGED, "this bundle's file is damaged or truncated (its stub cannot be found); copy it again");
    int child = getenv("_PYI_APPLICATION_HOME_DIR") || getenv("_PYI_ARCHIVE_FILE");
    int plain = !argv[1] || (strncmp(argv[1], "--bundle", 8) && strcmp(argv[1], "--"));
    if (!child && plain && bundle.size && !strstr(path, " (deleted)")) start_installed(self, bundle, path, argv);
    hand_over(self, boot, libc, archive, path, argv, child);
    return EXIT_HOST;
}
