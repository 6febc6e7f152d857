// A power cut for one process, as a file system sees it: everything written
// under one folder since it was last fsync'd is lost. Preloaded into the
// process under test (LD_PRELOAD), it keeps an undo log instead of a cache:
//
// - before each write (write, pwrite, writev, pwritev and their 64-bit names)
//   and ftruncate to a file under POWERCUT_DIR, the bytes about to be
//   overwritten and the file's size are saved;
// - fsync/fdatasync of the file forgets its undo log (that data is durable);
// - a file created, or renamed into place, under POWERCUT_DIR is a directory
//   entry that is durable only once its folder is fsync'd (as on ext4, whose
//   journal commits a rename or a create only with the next transaction);
// - when the file POWERCUT_TRIGGER appears, a watcher thread stops every
//   intercepted call, puts back the saved bytes and sizes (newest first),
//   undoes the renames and removes the files created since their folder's
//   last fsync, and ends the process with _exit(137), as SIGKILL would.
//
// What it does not model: data written through mmap (SQLite's -shm index is
// rebuilt from the WAL by the first connection after a crash), unlinks
// (treated as durable at once), and reordering of writes to one file before
// an fsync (all of them are lost together, the worst case for a commit).
//
// Build: cc -shared -fPIC -O2 -o powercut.so powercut.c -ldl -lpthread

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

typedef struct undo {
  off_t off;
  size_t len;
  char *old; // the bytes that were there (only the part inside the old size)
  off_t old_size;
  struct undo *next; // newer entries first
} undo_t;

typedef struct tracked {
  dev_t dev;
  ino_t ino;
  int fd; // our own dup, to put the bytes back even after a rename
  undo_t *log;
  struct tracked *next;
} tracked_t;

typedef struct dentry {
  int kind; // 1 created, 2 renamed
  char path[PATH_MAX]; // created: the file; renamed: the new name
  char from[PATH_MAX]; // renamed: the old name
  char dir[PATH_MAX];  // the folder whose fsync makes it durable
  struct dentry *next; // newer first
} dentry_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char root[PATH_MAX];
static size_t root_len;
static char trigger[PATH_MAX];
static tracked_t *files;
static dentry_t *dentries;
static int ready;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev64)(int, const struct iovec *, int, off_t);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_renameat2)(int, const char *, int, const char *, unsigned int);

static void *watch(void *arg);

__attribute__((constructor)) static void init(void) {
  real_write = dlsym(RTLD_NEXT, "write");
  real_pwrite = dlsym(RTLD_NEXT, "pwrite");
  real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
  real_writev = dlsym(RTLD_NEXT, "writev");
  real_pwritev = dlsym(RTLD_NEXT, "pwritev");
  real_pwritev64 = dlsym(RTLD_NEXT, "pwritev64");
  real_ftruncate = dlsym(RTLD_NEXT, "ftruncate");
  real_ftruncate64 = dlsym(RTLD_NEXT, "ftruncate64");
  real_fsync = dlsym(RTLD_NEXT, "fsync");
  real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
  real_open = dlsym(RTLD_NEXT, "open");
  real_open64 = dlsym(RTLD_NEXT, "open64");
  real_openat = dlsym(RTLD_NEXT, "openat");
  real_openat64 = dlsym(RTLD_NEXT, "openat64");
  real_rename = dlsym(RTLD_NEXT, "rename");
  real_renameat = dlsym(RTLD_NEXT, "renameat");
  real_renameat2 = dlsym(RTLD_NEXT, "renameat2");
  const char *d = getenv("POWERCUT_DIR");
  const char *t = getenv("POWERCUT_TRIGGER");
  // Child processes (gst-launch, ffmpeg) inherit LD_PRELOAD and the
  // environment: only the first process plays, and marks the environment
  // its children will get.
  if (getenv("POWERCUT_CHILD")) return;
  setenv("POWERCUT_CHILD", "1", 1);
  if (!d || !t || !realpath(d, root)) return;
  root_len = strlen(root);
  snprintf(trigger, sizeof trigger, "%s", t);
  pthread_t th;
  if (pthread_create(&th, NULL, watch, NULL) == 0) {
    pthread_detach(th);
    ready = 1;
  }
}

static int under_root(const char *abs) {
  return strncmp(abs, root, root_len) == 0 && (abs[root_len] == '/' || abs[root_len] == 0);
}

/** The absolute path of fd, or -1. */
static int fd_path(int fd, char *out) {
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, out, PATH_MAX - 1);
  if (n < 0) return -1;
  out[n] = 0;
  return 0;
}

/** Make `path` (relative to dirfd) absolute, without resolving its last part. */
static int abs_path(int dirfd, const char *path, char *out) {
  char base[PATH_MAX];
  if (path[0] == '/') {
    snprintf(out, PATH_MAX, "%s", path);
  } else {
    if (dirfd == AT_FDCWD) {
      if (!getcwd(base, sizeof base)) return -1;
    } else if (fd_path(dirfd, base) < 0) {
      return -1;
    }
    snprintf(out, PATH_MAX, "%s/%s", base, path);
  }
  // Resolve the folder (symlinks such as /tmp on some systems), keep the name.
  char dir[PATH_MAX], real[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", out);
  char *slash = strrchr(dir, '/');
  if (!slash) return -1;
  char name[PATH_MAX];
  snprintf(name, sizeof name, "%s", slash + 1);
  if (slash == dir) snprintf(dir, sizeof dir, "/");
  else *slash = 0;
  if (!realpath(dir, real)) return -1;
  snprintf(out, PATH_MAX, "%s/%s", strcmp(real, "/") == 0 ? "" : real, name);
  return 0;
}

static void parent_of(const char *abs, char *out) {
  snprintf(out, PATH_MAX, "%s", abs);
  char *slash = strrchr(out, '/');
  if (slash && slash != out) *slash = 0;
}

/** The tracked file behind fd (created on first sight when it is under the root), or NULL. Lock held. */
static tracked_t *tracked_for(int fd) {
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) return NULL;
  for (tracked_t *t = files; t; t = t->next)
    if (t->dev == st.st_dev && t->ino == st.st_ino) return t;
  char p[PATH_MAX];
  if (fd_path(fd, p) < 0 || !under_root(p)) return NULL;
  tracked_t *t = calloc(1, sizeof *t);
  t->dev = st.st_dev;
  t->ino = st.st_ino;
  t->fd = fcntl(fd, F_DUPFD_CLOEXEC, 100);
  if (t->fd < 0) {
    free(t);
    return NULL;
  }
  t->next = files;
  files = t;
  return t;
}

static void save(tracked_t *t, off_t off, size_t len) {
  struct stat st;
  if (fstat(t->fd, &st) < 0) return;
  undo_t *u = calloc(1, sizeof *u);
  u->off = off;
  u->old_size = st.st_size;
  if (off < st.st_size) {
    size_t keep = (size_t)(st.st_size - off) < len ? (size_t)(st.st_size - off) : len;
    u->old = malloc(keep);
    ssize_t n = pread(t->fd, u->old, keep, off);
    u->len = n > 0 ? (size_t)n : 0;
  }
  u->next = t->log;
  t->log = u;
}

static void forget(tracked_t *t) {
  while (t->log) {
    undo_t *u = t->log;
    t->log = u->next;
    free(u->old);
    free(u);
  }
}

/** Before a write of len bytes at off (or at the current offset, -1) to fd. */
static void before_write(int fd, off_t off, size_t len) {
  if (!ready || len == 0) return;
  tracked_t *t = tracked_for(fd);
  if (!t) return;
  if (off < 0) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && (fl & O_APPEND)) {
      struct stat st;
      off = fstat(fd, &st) == 0 ? st.st_size : 0;
    } else {
      off = lseek(fd, 0, SEEK_CUR);
    }
    if (off < 0) return;
  }
  save(t, off, len);
}

static void record_dentry(int kind, const char *path, const char *from) {
  dentry_t *d = calloc(1, sizeof *d);
  d->kind = kind;
  snprintf(d->path, PATH_MAX, "%s", path);
  if (from) snprintf(d->from, PATH_MAX, "%s", from);
  parent_of(path, d->dir);
  d->next = dentries;
  dentries = d;
}

static void commit_dir(const char *dir) {
  dentry_t **pp = &dentries;
  while (*pp) {
    dentry_t *d = *pp;
    if (strcmp(d->dir, dir) == 0) {
      *pp = d->next;
      free(d);
    } else {
      pp = &d->next;
    }
  }
}

static void on_sync(int fd) {
  if (!ready) return;
  struct stat st;
  if (fstat(fd, &st) < 0) return;
  if (S_ISDIR(st.st_mode)) {
    char p[PATH_MAX];
    if (fd_path(fd, p) == 0 && under_root(p)) commit_dir(p);
    return;
  }
  for (tracked_t *t = files; t; t = t->next)
    if (t->dev == st.st_dev && t->ino == st.st_ino) forget(t);
}

static size_t iov_len(const struct iovec *iov, int n) {
  size_t s = 0;
  for (int i = 0; i < n; i++) s += iov[i].iov_len;
  return s;
}

#define LOCKED(expr)           \
  do {                         \
    pthread_mutex_lock(&lock); \
    expr;                      \
    pthread_mutex_unlock(&lock); \
  } while (0)

ssize_t write(int fd, const void *b, size_t n) {
  ssize_t r;
  LOCKED(before_write(fd, -1, n); r = real_write(fd, b, n));
  return r;
}
ssize_t pwrite(int fd, const void *b, size_t n, off_t off) {
  ssize_t r;
  LOCKED(before_write(fd, off, n); r = real_pwrite(fd, b, n, off));
  return r;
}
ssize_t pwrite64(int fd, const void *b, size_t n, off_t off) {
  ssize_t r;
  LOCKED(before_write(fd, off, n); r = real_pwrite64(fd, b, n, off));
  return r;
}
ssize_t writev(int fd, const struct iovec *iov, int cnt) {
  ssize_t r;
  LOCKED(before_write(fd, -1, iov_len(iov, cnt)); r = real_writev(fd, iov, cnt));
  return r;
}
ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
  ssize_t r;
  LOCKED(before_write(fd, off, iov_len(iov, cnt)); r = real_pwritev(fd, iov, cnt, off));
  return r;
}
ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off) {
  ssize_t r;
  LOCKED(before_write(fd, off, iov_len(iov, cnt)); r = real_pwritev64(fd, iov, cnt, off));
  return r;
}

static void before_truncate(int fd, off_t len) {
  if (!ready) return;
  tracked_t *t = tracked_for(fd);
  if (!t) return;
  struct stat st;
  if (fstat(fd, &st) < 0) return;
  // Growing: the undo only restores the size. Shrinking: save what goes.
  save(t, len, len < st.st_size ? (size_t)(st.st_size - len) : 0);
}
int ftruncate(int fd, off_t len) {
  int r;
  LOCKED(before_truncate(fd, len); r = real_ftruncate(fd, len));
  return r;
}
int ftruncate64(int fd, off_t len) {
  int r;
  LOCKED(before_truncate(fd, len); r = real_ftruncate64(fd, len));
  return r;
}

int fsync(int fd) {
  int r = real_fsync(fd);
  if (r == 0) LOCKED(on_sync(fd));
  return r;
}
int fdatasync(int fd) {
  int r = real_fdatasync(fd);
  if (r == 0) LOCKED(on_sync(fd));
  return r;
}

static int do_open(int dirfd, const char *path, int flags, mode_t mode, int at, int (*fn_at)(int, const char *, int, ...), int (*fn)(const char *, int, ...)) {
  int r;
  pthread_mutex_lock(&lock);
  char abs[PATH_MAX];
  int watch_it = ready && (flags & O_CREAT) && abs_path(dirfd, path, abs) == 0 && under_root(abs) && access(abs, F_OK) != 0;
  r = at ? fn_at(dirfd, path, flags, mode) : fn(path, flags, mode);
  if (r >= 0 && watch_it) record_dentry(1, abs, NULL);
  pthread_mutex_unlock(&lock);
  return r;
}

#define MODE_ARG                                  \
  mode_t mode = 0;                                \
  if (flags & (O_CREAT | O_TMPFILE)) {            \
    va_list ap;                                   \
    va_start(ap, flags);                          \
    mode = va_arg(ap, mode_t);                    \
    va_end(ap);                                   \
  }

int open(const char *path, int flags, ...) {
  MODE_ARG
  return do_open(AT_FDCWD, path, flags, mode, 0, NULL, real_open);
}
int open64(const char *path, int flags, ...) {
  MODE_ARG
  return do_open(AT_FDCWD, path, flags, mode, 0, NULL, real_open64);
}
int openat(int dirfd, const char *path, int flags, ...) {
  MODE_ARG
  return do_open(dirfd, path, flags, mode, 1, real_openat, NULL);
}
int openat64(int dirfd, const char *path, int flags, ...) {
  MODE_ARG
  return do_open(dirfd, path, flags, mode, 1, real_openat64, NULL);
}

static void after_rename(int olddir, const char *oldp, int newdir, const char *newp) {
  char a[PATH_MAX], b[PATH_MAX];
  if (!ready || abs_path(olddir, oldp, a) < 0 || abs_path(newdir, newp, b) < 0) return;
  if (under_root(b)) record_dentry(2, b, a);
}
int rename(const char *o, const char *n) {
  int r;
  LOCKED(r = real_rename(o, n); if (r == 0) after_rename(AT_FDCWD, o, AT_FDCWD, n));
  return r;
}
int renameat(int od, const char *o, int nd, const char *n) {
  int r;
  LOCKED(r = real_renameat(od, o, nd, n); if (r == 0) after_rename(od, o, nd, n));
  return r;
}
int renameat2(int od, const char *o, int nd, const char *n, unsigned int fl) {
  int r;
  LOCKED(r = real_renameat2(od, o, nd, n, fl); if (r == 0) after_rename(od, o, nd, n));
  return r;
}

/** Put everything back that was not durable, then die. Called with the lock held; never returns. */
static void cut(void) {
  int bytes = 0, entries = 0;
  for (tracked_t *t = files; t; t = t->next) {
    for (undo_t *u = t->log; u; u = u->next) {
      if (u->old && u->len) real_pwrite(t->fd, u->old, u->len, u->off);
      real_ftruncate(t->fd, u->old_size);
      bytes += (int)u->len;
    }
  }
  for (dentry_t *d = dentries; d; d = d->next) {
    if (d->kind == 2) real_rename(d->path, d->from);
    else unlink(d->path);
    entries++;
  }
  char msg[160];
  int n = snprintf(msg, sizeof msg, "powercut: power cut in pid %d: %d undone byte(s) restored, %d directory entr%s undone\n", getpid(), bytes, entries, entries == 1 ? "y" : "ies");
  real_write(2, msg, (size_t)n);
  _exit(137);
}

static void *watch(void *arg) {
  (void)arg;
  struct timespec ts = {0, 2 * 1000 * 1000};
  for (;;) {
    if (access(trigger, F_OK) == 0) {
      pthread_mutex_lock(&lock);
      cut();
    }
    nanosleep(&ts, NULL);
  }
  return NULL;
}
