/*
 * A V4L2 camera in userspace, for tests (device/tests/v4l2_fake.rs builds and preloads it).
 *
 * With LD_PRELOAD set to this library, opening the path in AVSC_FAKE_V4L2_DEVICE gives a
 * memory-mapped streaming capture device that answers what the `v4l` crate calls: open,
 * close, the ioctls (through `syscall(SYS_ioctl, ...)`, as v4l 0.14 issues them, or
 * `ioctl`), mmap, munmap and poll. Every other path, descriptor and system call goes to
 * libc untouched.
 *
 * The camera, from the environment:
 *   AVSC_FAKE_V4L2_DEVICE  the path it answers (required; without it nothing is faked)
 *   AVSC_FAKE_V4L2_FORMAT  the one pixel format it offers: MJPG (default), YUYV, or any
 *                          fourcc (a camera offering only H264, say)
 *   AVSC_FAKE_V4L2_SIZE    WxH it captures at whatever is asked (default: what is asked)
 *   AVSC_FAKE_V4L2_STRIDE  bytes per row of a YUYV frame (default 2 * W; more is padding)
 *   AVSC_FAKE_V4L2_FPS     frames per second (default 10)
 *   AVSC_FAKE_V4L2_LATE_MS how long after its capture a frame is delivered (default 0)
 *   AVSC_FAKE_V4L2_FRAMES  files, separated by ':', each one frame's bytes; frame k is
 *                          file k mod n
 *   AVSC_FAKE_V4L2_SCRIPT  spans of seconds since the device was first opened, ';'
 *                          separated: "stall FROM TO" (no frames; the device stays open)
 *                          or "gone FROM TO" (unplugged: open fails with ENOENT, an open
 *                          descriptor reports POLLERR and ENODEV for good) or "eio FROM
 *                          TO" (a failing bus: every ioctl answers EIO, no frames)
 *   AVSC_FAKE_V4L2_LOG     a file that gets one line per call answered
 *
 * Like a driver: frame k is captured at t0 + k / fps (t0: the first open) while the
 * stream is on, into the earliest buffer queued by then, and dropped when none is;
 * dequeued buffers carry the capture time (CLOCK_MONOTONIC, flagged so), the frame
 * number as sequence, and the frame's length as bytesused.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/videodev2.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_BUFS 8
#define MAX_FRAMES 16
#define MAX_SPANS 8

enum state { FREE, QUEUED, FILLED };

enum span_kind { STALL, GONE, EIO_ };

struct span {
    double from, to;
    enum span_kind kind;
};

struct buf {
    enum state state;
    double queued_at; /* QUEUED: when */
    long frame;       /* FILLED: which */
    void *map;
};

static struct {
    int ready, on;
    char device[512];
    unsigned fourcc, width, height, stride, fixed_size, fixed_stride;
    double fps, late;
    unsigned char *frames[MAX_FRAMES];
    size_t frame_len[MAX_FRAMES];
    int n_frames;
    struct span spans[MAX_SPANS];
    int n_spans;
    FILE *log;
    double t0;        /* the first open; < 0 before it */
    double opened_at; /* the open descriptor's */
    unsigned nbufs;
    size_t buf_size, buf_stride;
    struct buf bufs[MAX_BUFS];
    int streaming;
    long next; /* the next frame to capture */
} S = {.t0 = -1};

static int fake_fd = -1; /* read without the lock: every system call checks it */
static pthread_mutex_t M = PTHREAD_MUTEX_INITIALIZER;

#define REAL(name) ((__typeof__(&name))real_fn(#name))
static void *real_fn(const char *name) { return dlsym(RTLD_NEXT, name); }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_until(double t) {
    struct timespec ts = {.tv_sec = (time_t)t, .tv_nsec = (long)((t - floor(t)) * 1e9)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static void logf_(const char *fmt, ...) {
    if (!S.log)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(S.log, "%.3f ", S.t0 < 0 ? 0.0 : now_s() - S.t0);
    vfprintf(S.log, fmt, ap);
    fputc('\n', S.log);
    fflush(S.log);
    va_end(ap);
}

static unsigned fourcc_of(const char *s) {
    char c[4] = {' ', ' ', ' ', ' '};
    for (int i = 0; i < 4 && s[i]; i++)
        c[i] = s[i];
    return v4l2_fourcc(c[0], c[1], c[2], c[3]);
}

static void load_frame(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f || S.n_frames == MAX_FRAMES) {
        fprintf(stderr, "fake_v4l2: cannot read frame %s\n", path);
        abort();
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(n > 0 ? n : 1);
    if (fread(b, 1, n, f) != (size_t)n)
        abort();
    fclose(f);
    S.frames[S.n_frames] = b;
    S.frame_len[S.n_frames++] = n;
}

/* Read the environment once; with the lock held. */
static void init(void) {
    if (S.ready)
        return;
    S.ready = 1;
    const char *dev = getenv("AVSC_FAKE_V4L2_DEVICE");
    if (!dev || !*dev)
        return;
    S.on = 1;
    snprintf(S.device, sizeof S.device, "%s", dev);
    const char *v = getenv("AVSC_FAKE_V4L2_FORMAT");
    S.fourcc = fourcc_of(v && *v ? v : "MJPG");
    if ((v = getenv("AVSC_FAKE_V4L2_SIZE")) && sscanf(v, "%ux%u", &S.width, &S.height) == 2)
        S.fixed_size = 1;
    if ((v = getenv("AVSC_FAKE_V4L2_STRIDE")))
        S.fixed_stride = (unsigned)atoi(v);
    S.fps = (v = getenv("AVSC_FAKE_V4L2_FPS")) ? atof(v) : 10.0;
    S.late = (v = getenv("AVSC_FAKE_V4L2_LATE_MS")) ? atof(v) / 1e3 : 0.0;
    if ((v = getenv("AVSC_FAKE_V4L2_FRAMES"))) {
        char *list = strdup(v), *save = NULL;
        for (char *p = strtok_r(list, ":", &save); p; p = strtok_r(NULL, ":", &save))
            load_frame(p);
        free(list);
    }
    if ((v = getenv("AVSC_FAKE_V4L2_SCRIPT"))) {
        char *list = strdup(v), *save = NULL;
        for (char *p = strtok_r(list, ";", &save); p && S.n_spans < MAX_SPANS; p = strtok_r(NULL, ";", &save)) {
            char kind[16];
            struct span *s = &S.spans[S.n_spans];
            if (sscanf(p, " %15s %lf %lf", kind, &s->from, &s->to) == 3) {
                s->kind = strcmp(kind, "gone") == 0 ? GONE : strcmp(kind, "eio") == 0 ? EIO_ : STALL;
                S.n_spans++;
            }
        }
        free(list);
    }
    if ((v = getenv("AVSC_FAKE_V4L2_LOG")))
        S.log = fopen(v, "a");
}

/* Whether second `t` (device time) falls in a span of that kind (-1: any). */
static int in_span(double t, int kind) {
    for (int i = 0; i < S.n_spans; i++)
        if ((kind < 0 || (int)S.spans[i].kind == kind) && t >= S.spans[i].from && t < S.spans[i].to)
            return 1;
    return 0;
}

/* An unplug since the descriptor was opened kills it for good. */
static int dead(double now) {
    for (int i = 0; i < S.n_spans; i++)
        if (S.spans[i].kind == GONE && S.spans[i].from < now - S.t0 && S.spans[i].to > S.opened_at - S.t0)
            return 1;
    return 0;
}

static double capture_time(long k) { return S.t0 + k / S.fps; }

/* Capture every frame delivered by `now` into the buffers queued by then. */
static void capture(double now) {
    if (!S.streaming)
        return;
    for (;; S.next++) {
        double c = capture_time(S.next), at = c + S.late;
        if (at > now)
            return;
        if (in_span(c - S.t0, -1))
            continue;
        struct buf *best = NULL;
        for (unsigned i = 0; i < S.nbufs; i++)
            if (S.bufs[i].state == QUEUED && S.bufs[i].queued_at <= at && (!best || S.bufs[i].queued_at < best->queued_at))
                best = &S.bufs[i];
        if (best) {
            best->state = FILLED;
            best->frame = S.next;
        } else {
            logf_("dropped %ld (no buffer queued)", S.next);
        }
    }
}

/* When the next frame will be delivered. */
static double next_delivery(void) {
    for (long k = S.next;; k++)
        if (!in_span(capture_time(k) - S.t0, -1))
            return capture_time(k) + S.late;
}

static int fail(int e) {
    errno = e;
    return -1;
}

static void fill_format(struct v4l2_format *f) {
    struct v4l2_pix_format *p = &f->fmt.pix;
    p->width = S.width;
    p->height = S.height;
    p->pixelformat = S.fourcc;
    p->field = V4L2_FIELD_NONE;
    p->bytesperline = S.fourcc == V4L2_PIX_FMT_YUYV ? S.stride : 0;
    p->sizeimage = S.buf_size;
    p->colorspace = V4L2_COLORSPACE_SRGB;
}

static void set_size(unsigned w, unsigned h) {
    if (!S.fixed_size) {
        S.width = w;
        S.height = h;
    }
    S.stride = S.fixed_stride ? S.fixed_stride : 2 * S.width;
    size_t n = (size_t)S.stride * S.height;
    for (int i = 0; i < S.n_frames; i++)
        if (S.frame_len[i] > n)
            n = S.frame_len[i];
    S.buf_size = n;
    S.buf_stride = (n + 4095) & ~(size_t)4095;
}

static const char *name_of(unsigned long req) {
    switch (req) {
    case VIDIOC_QUERYCAP: return "QUERYCAP";
    case VIDIOC_S_FMT: return "S_FMT";
    case VIDIOC_G_FMT: return "G_FMT";
    case VIDIOC_REQBUFS: return "REQBUFS";
    case VIDIOC_QUERYBUF: return "QUERYBUF";
    case VIDIOC_QBUF: return "QBUF";
    case VIDIOC_DQBUF: return "DQBUF";
    case VIDIOC_STREAMON: return "STREAMON";
    case VIDIOC_STREAMOFF: return "STREAMOFF";
    default: return "ioctl";
    }
}

static int fake_ioctl(unsigned long req, void *arg) {
    double now = now_s();
    if (dead(now)) {
        logf_("%s ENODEV", name_of(req));
        return fail(ENODEV);
    }
    if (in_span(now - S.t0, EIO_)) {
        logf_("%s EIO", name_of(req));
        return fail(EIO);
    }
    switch (req) {
    case VIDIOC_QUERYCAP: {
        struct v4l2_capability *c = arg;
        memset(c, 0, sizeof *c);
        snprintf((char *)c->driver, sizeof c->driver, "avsc-fake");
        snprintf((char *)c->card, sizeof c->card, "avsc fake camera");
        snprintf((char *)c->bus_info, sizeof c->bus_info, "platform:avsc-fake");
        c->version = 0x060100;
        c->device_caps = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING;
        c->capabilities = c->device_caps | V4L2_CAP_DEVICE_CAPS;
        logf_("QUERYCAP");
        return 0;
    }
    case VIDIOC_S_FMT:
    case VIDIOC_G_FMT: {
        struct v4l2_format *f = arg;
        if (f->type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
            return fail(EINVAL);
        if (req == VIDIOC_S_FMT) {
            if (S.nbufs)
                return fail(EBUSY);
            logf_("S_FMT %ux%u %.4s", f->fmt.pix.width, f->fmt.pix.height, (char *)&f->fmt.pix.pixelformat);
            set_size(f->fmt.pix.width, f->fmt.pix.height);
        } else {
            logf_("G_FMT");
        }
        fill_format(f);
        return 0;
    }
    case VIDIOC_REQBUFS: {
        struct v4l2_requestbuffers *r = arg;
        if (r->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || r->memory != V4L2_MEMORY_MMAP)
            return fail(EINVAL);
        if (S.streaming)
            return fail(EBUSY);
        for (unsigned i = 0; i < S.nbufs; i++)
            if (S.bufs[i].map)
                return fail(EBUSY); /* still mapped */
        S.nbufs = r->count > MAX_BUFS ? MAX_BUFS : r->count;
        r->count = S.nbufs;
        memset(S.bufs, 0, sizeof S.bufs);
        logf_("REQBUFS %u", S.nbufs);
        return 0;
    }
    case VIDIOC_QUERYBUF:
    case VIDIOC_QBUF:
    case VIDIOC_DQBUF: {
        struct v4l2_buffer *b = arg;
        if (b->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || b->memory != V4L2_MEMORY_MMAP)
            return fail(EINVAL);
        if (req == VIDIOC_DQBUF) {
            capture(now);
            struct buf *best = NULL;
            for (unsigned i = 0; i < S.nbufs; i++)
                if (S.bufs[i].state == FILLED && (!best || S.bufs[i].frame < best->frame))
                    best = &S.bufs[i];
            if (!best)
                return fail(EAGAIN);
            b->index = best - S.bufs;
            long k = best->frame;
            size_t n = 0;
            if (S.n_frames) {
                int f = k % S.n_frames;
                n = S.frame_len[f] < S.buf_size ? S.frame_len[f] : S.buf_size;
                if (best->map)
                    memcpy(best->map, S.frames[f], n);
            }
            best->state = FREE;
            double c = capture_time(k);
            b->bytesused = n;
            b->flags = V4L2_BUF_FLAG_MAPPED | V4L2_BUF_FLAG_DONE | V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC |
                       V4L2_BUF_FLAG_TSTAMP_SRC_SOE;
            b->field = V4L2_FIELD_NONE;
            b->timestamp.tv_sec = (long)c;
            b->timestamp.tv_usec = (long)((c - floor(c)) * 1e6);
            b->sequence = k;
            b->m.offset = b->index * S.buf_stride;
            b->length = S.buf_size;
            logf_("DQBUF %u frame %ld", b->index, k);
            return 0;
        }
        if (b->index >= S.nbufs)
            return fail(EINVAL);
        struct buf *x = &S.bufs[b->index];
        if (req == VIDIOC_QBUF) {
            if (x->state != FREE)
                return fail(EINVAL);
            x->state = QUEUED;
            x->queued_at = now;
            logf_("QBUF %u", b->index);
            return 0;
        }
        b->length = S.buf_size;
        b->m.offset = b->index * S.buf_stride;
        b->flags = x->map ? V4L2_BUF_FLAG_MAPPED : 0;
        logf_("QUERYBUF %u", b->index);
        return 0;
    }
    case VIDIOC_STREAMON:
        if (!S.nbufs)
            return fail(EINVAL);
        S.streaming = 1;
        S.next = (long)ceil((now - S.t0) * S.fps);
        logf_("STREAMON");
        return 0;
    case VIDIOC_STREAMOFF:
        S.streaming = 0;
        for (unsigned i = 0; i < S.nbufs; i++)
            S.bufs[i].state = FREE;
        logf_("STREAMOFF");
        return 0;
    default:
        logf_("ioctl 0x%lx ENOTTY", req);
        return fail(ENOTTY);
    }
}

static int is_fake(long fd) { return fd >= 0 && fd == __atomic_load_n(&fake_fd, __ATOMIC_ACQUIRE); }

static int handle_ioctl(int fd, unsigned long req, void *arg) {
    pthread_mutex_lock(&M);
    int r = fake_ioctl(req, arg);
    int e = errno;
    pthread_mutex_unlock(&M);
    (void)fd;
    errno = e;
    return r;
}

long syscall(long n, ...) {
    va_list ap;
    va_start(ap, n);
    long a[6];
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (n == SYS_ioctl && is_fake(a[0]))
        return handle_ioctl((int)a[0], (unsigned long)a[1], (void *)a[2]);
    return REAL(syscall)(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}

int ioctl(int fd, unsigned long req, ...) {
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (is_fake(fd))
        return handle_ioctl(fd, req, arg);
    return REAL(ioctl)(fd, req, arg);
}

static int open_fake(const char *path, int flags) {
    pthread_mutex_lock(&M);
    init();
    int r;
    if (!S.on || strcmp(path, S.device) != 0) {
        r = -2;
    } else {
        double now = now_s();
        if (S.t0 < 0)
            S.t0 = now;
        if (in_span(now - S.t0, GONE)) {
            logf_("open ENOENT (unplugged)");
            errno = ENOENT;
            r = -1;
        } else if (fake_fd >= 0) {
            logf_("open EBUSY");
            errno = EBUSY;
            r = -1;
        } else {
            r = REAL(open)("/dev/null", O_RDWR | (flags & O_CLOEXEC));
            if (r >= 0) {
                S.opened_at = now;
                S.nbufs = 0;
                S.streaming = 0;
                memset(S.bufs, 0, sizeof S.bufs);
                __atomic_store_n(&fake_fd, r, __ATOMIC_RELEASE);
                logf_("open");
            }
        }
    }
    int e = errno;
    pthread_mutex_unlock(&M);
    errno = e;
    return r;
}

/* open and open64 (the same on 64-bit glibc; either may be what a program calls). */
#define FAKE_OPEN(name)                                                                    \
    int name(const char *path, int flags, ...) {                                           \
        mode_t mode = 0;                                                                   \
        if (flags & (O_CREAT | O_TMPFILE)) {                                               \
            va_list ap;                                                                    \
            va_start(ap, flags);                                                           \
            mode = va_arg(ap, mode_t);                                                     \
            va_end(ap);                                                                    \
        }                                                                                  \
        int r = open_fake(path, flags);                                                    \
        return r != -2 ? r : REAL(name)(path, flags, mode);                                \
    }
FAKE_OPEN(open)
FAKE_OPEN(open64)

int close(int fd) {
    if (is_fake(fd)) {
        pthread_mutex_lock(&M);
        __atomic_store_n(&fake_fd, -1, __ATOMIC_RELEASE);
        S.streaming = 0;
        logf_("close");
        pthread_mutex_unlock(&M);
    }
    return REAL(close)(fd);
}

static void *map_fake(size_t len, off_t off) {
    pthread_mutex_lock(&M);
    void *r = MAP_FAILED;
    unsigned i = S.buf_stride ? off / S.buf_stride : MAX_BUFS;
    if (i < S.nbufs && off % S.buf_stride == 0 && len <= S.buf_size && !S.bufs[i].map) {
        r = REAL(mmap)(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (r != MAP_FAILED)
            S.bufs[i].map = r;
        logf_("mmap %u", i);
    } else {
        errno = EINVAL;
    }
    int e = errno;
    pthread_mutex_unlock(&M);
    errno = e;
    return r;
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    if (is_fake(fd))
        return map_fake(len, off);
    return REAL(mmap)(addr, len, prot, flags, fd, off);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    if (is_fake(fd))
        return map_fake(len, off);
    return REAL(mmap64)(addr, len, prot, flags, fd, off);
}

int munmap(void *addr, size_t len) {
    if (S.on) {
        pthread_mutex_lock(&M);
        for (unsigned i = 0; i < MAX_BUFS; i++)
            if (S.bufs[i].map == addr) {
                S.bufs[i].map = NULL;
                logf_("munmap %u", i);
            }
        pthread_mutex_unlock(&M);
    }
    return REAL(munmap)(addr, len);
}

/* glibc declares poll's array write-only; a poll that reads it is what the kernel does. */
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
int poll(struct pollfd *fds, nfds_t n, int timeout) {
    if (n != 1 || !is_fake(fds[0].fd))
        return REAL(poll)(fds, n, timeout);
    double deadline = timeout < 0 ? INFINITY : now_s() + timeout / 1e3;
    for (;;) {
        pthread_mutex_lock(&M);
        double now = now_s();
        int ready = 0;
        double wake = INFINITY;
        if (dead(now) || in_span(now - S.t0, EIO_)) {
            fds[0].revents = POLLERR | (dead(now) ? POLLHUP : 0);
            logf_(dead(now) ? "poll POLLERR (unplugged)" : "poll POLLERR (I/O error)");
            ready = 1;
        } else {
            capture(now);
            for (unsigned i = 0; i < S.nbufs; i++)
                ready |= S.bufs[i].state == FILLED;
            if (ready)
                fds[0].revents = POLLIN | POLLRDNORM;
            else if (S.streaming)
                wake = next_delivery();
            for (int i = 0; i < S.n_spans; i++)
                if (S.spans[i].kind == GONE && S.t0 + S.spans[i].from > now && S.t0 + S.spans[i].from < wake)
                    wake = S.t0 + S.spans[i].from;
        }
        pthread_mutex_unlock(&M);
        if (ready)
            return 1;
        if (now >= deadline) {
            fds[0].revents = 0;
            pthread_mutex_lock(&M);
            logf_("poll timeout");
            pthread_mutex_unlock(&M);
            return 0;
        }
        sleep_until(wake < deadline ? wake : deadline);
    }
}
