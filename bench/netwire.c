/* bench/netwire.c — a slow network in user space: TUN devices joined by links of a given rate
 * and one-way delay, for bench/netns_check.sh (the same job as `tc qdisc ... netem rate R
 * delay D` on veth pairs, for kernels built without netem).
 *
 *   netwire --rate-mbit R --delay-us D [--mtu M] NAME=ADDR NAME=ADDR [NAME=ADDR ...]
 *
 * Creates one TUN device per NAME (IPv4 packets, no packet information header), prints
 * "ready" on stdout, then forwards every IPv4 packet read from a device to the device whose
 * ADDR is the packet's destination, as a star of hosts on a switch: each device's outgoing
 * packets leave through a link of its own, at R Mbit/s one after the other, and arrive D µs
 * after their last bit left. A packet of L bytes read at time t from device k:
 *
 *     leaves  = max(t, link_free[k]) + 8 L / R        link_free[k] = leaves
 *     arrives = leaves + D
 *
 * which is netem's rate + delay (serialisation, then propagation). At most QUEUE packets wait
 * per link (netem's default limit is 1000): more are dropped, as a full queue drops them, and
 * TCP slows down. Packets to no known address (IPv6, broadcasts) are dropped.
 * The script moves the devices into network namespaces and gives them the addresses; the
 * devices disappear when netwire exits (SIGTERM, SIGINT). Linux only; needs CAP_NET_ADMIN. */
#define _GNU_SOURCE /* ppoll */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define MAX_DEVS 16
#define QUEUE    1024

typedef struct packet {
    double arrives; /* seconds, CLOCK_MONOTONIC */
    size_t len;
    int to;
    unsigned char *data;
} packet;

typedef struct wire {
    int fd;
    uint32_t addr; /* network order */
    double free_at;
    packet queue[QUEUE]; /* FIFO: arrival times grow along it */
    size_t head, count;
    unsigned long long sent, dropped;
} wire;

static volatile sig_atomic_t stop;
static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int tun_open(const char *name) {
    const int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK);
    if (fd < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv) {
    double rate_bps = 0, delay_s = 0;
    int mtu = 9000, n = 0;
    wire *links = calloc(MAX_DEVS, sizeof *links);
    if (!links) return 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rate-mbit") == 0 && i + 1 < argc) {
            rate_bps = atof(argv[++i]) * 1e6;
        } else if (strcmp(argv[i], "--delay-us") == 0 && i + 1 < argc) {
            delay_s = atof(argv[++i]) * 1e-6;
        } else if (strcmp(argv[i], "--mtu") == 0 && i + 1 < argc) {
            mtu = atoi(argv[++i]);
        } else {
            char *eq = strchr(argv[i], '=');
            struct in_addr a;
            if (!eq || n == MAX_DEVS) goto usage;
            *eq = '\0';
            if (inet_pton(AF_INET, eq + 1, &a) != 1) goto usage;
            links[n].addr = a.s_addr;
            links[n].fd = tun_open(argv[i]);
            if (links[n].fd < 0) {
                fprintf(stderr, "netwire: cannot create TUN device %s: %s\n", argv[i],
                        strerror(errno));
                return 1;
            }
            n++;
        }
    }
    if (n < 2 || !(rate_bps > 0) || delay_s < 0 || mtu < 576 || mtu > 65535) goto usage;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    printf("ready\n");
    fflush(stdout);

    struct pollfd pfd[MAX_DEVS];
    for (int k = 0; k < n; k++) pfd[k] = (struct pollfd){.fd = links[k].fd, .events = POLLIN};
    unsigned char *buf = malloc((size_t)mtu + 64);
    if (!buf) return 1;
    while (!stop) {
        /* deliver what has arrived; sleep until the next arrival or a new packet */
        double t = now(), next = t + 1.0;
        for (int k = 0; k < n; k++) {
            wire *l = &links[k];
            while (l->count && l->queue[l->head].arrives <= t) {
                packet *p = &l->queue[l->head];
                if (write(links[p->to].fd, p->data, p->len) < 0 && errno != EAGAIN)
                    fprintf(stderr, "netwire: write: %s\n", strerror(errno));
                free(p->data);
                l->head = (l->head + 1) % QUEUE, l->count--, l->sent++;
            }
            if (l->count && l->queue[l->head].arrives < next) next = l->queue[l->head].arrives;
        }
        const double wait = next - t;
        const struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        if (ppoll(pfd, (nfds_t)n, &ts, NULL) <= 0) continue;
        for (int k = 0; k < n; k++) {
            if (!(pfd[k].revents & POLLIN)) continue;
            ssize_t len;
            while ((len = read(links[k].fd, buf, (size_t)mtu + 64)) > 0) {
                wire *l = &links[k];
                int to = -1;
                if (len >= 20 && (buf[0] >> 4) == 4) {
                    uint32_t dst;
                    memcpy(&dst, buf + 16, 4);
                    for (int j = 0; j < n; j++)
                        if (links[j].addr == dst && j != k) to = j;
                }
                if (to < 0) continue;
                if (l->count == QUEUE) {
                    l->dropped++;
                    continue;
                }
                const double t_in = now();
                l->free_at = (l->free_at > t_in ? l->free_at : t_in) + 8.0 * (double)len / rate_bps;
                packet *p = &l->queue[(l->head + l->count) % QUEUE];
                p->data = malloc((size_t)len);
                if (!p->data) return 1;
                memcpy(p->data, buf, (size_t)len);
                *p = (packet){l->free_at + delay_s, (size_t)len, to, p->data};
                l->count++;
            }
        }
    }
    for (int k = 0; k < n; k++) {
        fprintf(stderr, "netwire: link %d: %llu packets sent, %llu dropped\n", k, links[k].sent,
                links[k].dropped);
        close(links[k].fd);
        while (links[k].count) {
            free(links[k].queue[links[k].head].data);
            links[k].head = (links[k].head + 1) % QUEUE, links[k].count--;
        }
    }
    free(buf);
    free(links);
    return 0;
usage:
    fprintf(stderr,
            "usage: netwire --rate-mbit R --delay-us D [--mtu M] NAME=ADDR NAME=ADDR ...\n");
    return 2;
}
