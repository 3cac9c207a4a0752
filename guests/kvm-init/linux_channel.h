/*
 * pvspec: what the two inits that run inside a Linux guest (guests/kvm-init/init.c and
 * guests/xen-dom0/init.c) share to reach the host over a virtio-serial port rather than the
 * serial console: the kernel's command line, the modules of the initramfs and the port.
 *
 * Why a virtio-serial port: the console is QEMU's PL011, which takes one input byte per
 * main-loop pass (~50-60 us a byte), so a request's length sets the pace; QEMU's
 * virtserialport (on virtio-mmio) takes whole buffers.  Debian's arm64 kernel builds
 * virtio_mmio and virtio_console as modules: scripts/fetch-xen-arm64 unpacks them from the
 * kernel package, and each init's initramfs holds them in /modules (ORDER: load order).
 *
 * Included once by each init, after its emit(seq, fmt, ...) (the protocol's line writer),
 * which these functions use to report what they did.  Everything here is static.
 */
#ifndef PVSPEC_LINUX_CHANNEL_H
#define PVSPEC_LINUX_CHANNEL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The value of <key>=<value> on the kernel command line (or NULL).  The result lives in a
 * static buffer shared by every call: copy it or use it before the next call. */
static const char *cmdline_value(const char *key)
{
    static char buf[4096];
    int fd = open("/proc/cmdline", O_RDONLY);
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return NULL;
    buf[n] = 0;
    size_t k = strlen(key);
    for (char *save = NULL, *t = strtok_r(buf, " \n", &save); t; t = strtok_r(NULL, " \n", &save))
        if (strncmp(t, key, k) == 0 && t[k] == '=')
            return t + k + 1;
    return NULL;
}

/* Load the modules listed in /modules/ORDER (/modules/<name>.ko, finit_module), in order;
 * each is reported as the unsolicited line "M <name> <0 or -errno>" (already loaded counts
 * as 0).  No ORDER file: nothing to load (the drivers are built in, or not wanted). */
static void load_modules(void)
{
    FILE *f = fopen("/modules/ORDER", "r");
    char name[128], path[192];
    if (f == NULL)
        return;
    while (fgets(name, sizeof name, f) != NULL) {
        name[strcspn(name, "\r\n")] = 0;
        if (name[0] == 0)
            continue;
        snprintf(path, sizeof path, "/modules/%s.ko", name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        long rc = fd < 0 ? -(long)errno : syscall(SYS_finit_module, fd, "", 0);
        if (rc == -1)
            rc = -(long)errno;
        if (fd >= 0)
            close(fd);
        emit("-", "M %s %ld", name, rc == -EEXIST ? 0L : rc);
    }
    fclose(f);
}

/* The virtio-serial port named name (/sys/class/virtio-ports/<vportNpM>/name), opened
 * read-write: up to ms milliseconds for it to appear (the driver probes the device
 * asynchronously); -1 if it does not.  Without /sys/class/virtio-ports after that long
 * there is no virtio_console driver at all.  Reported as "CHANNEL virtio <vportNpM>". */
static int open_vport(const char *name, int ms)
{
    for (int waited = 0;; waited += 10) {
        DIR *d = opendir("/sys/class/virtio-ports");
        struct dirent *e;
        while (d != NULL && (e = readdir(d)) != NULL) {
            char path[300], got[64] = {0};
            if (e->d_name[0] == '.')
                continue;
            snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
            int fd = open(path, O_RDONLY);
            if (fd < 0)
                continue;
            ssize_t n = read(fd, got, sizeof got - 1);
            close(fd);
            got[n > 0 ? n : 0] = 0;
            got[strcspn(got, "\n")] = 0;
            if (strcmp(got, name) != 0)
                continue;
            snprintf(path, sizeof path, "/dev/%s", e->d_name);
            fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
            if (fd >= 0) {
                closedir(d);
                emit("-", "CHANNEL virtio %s", e->d_name);
                return fd;
            }
        }
        if (d != NULL)
            closedir(d);
        if (waited >= ms)
            return -1;
        struct timespec ten_ms = {0, 10000000L};
        nanosleep(&ten_ms, NULL);
    }
}

#endif
