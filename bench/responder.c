/* responder: the benchmark's upstream. A single-threaded UDP DNS server on 127.0.0.1:PORT that
 * answers every query with the question echoed and one A record (127.0.0.2, TTL 3600).
 *
 * It must never be the bottleneck, so it reads and writes in batches (recvmmsg/sendmmsg) and
 * does no parsing beyond walking the question name. Its own CPU time is measured by the
 * harness from /proc to show that it stays small.
 *
 *   cc -O2 -o responder responder.c && ./responder PORT
 *
 * It refuses any address outside 127.0.0.0/8: this is a loopback-only test tool.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64
#define BUFSZ 1500
#define TTL 3600u

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

/* Build the reply for query q (len n) into r; return its length, or 0 to drop the packet. */
static size_t answer(const unsigned char *q, size_t n, unsigned char *r) {
    if (n < 12 || (q[2] & 0x80) || q[4] != 0 || q[5] != 1) /* response, or not 1 question */
        return 0;
    size_t off = 12;
    while (off < n && q[off] != 0) {
        if (q[off] > 63) return 0; /* compressed or bad label: not a query we answer */
        off += q[off] + 1;
    }
    off += 1 + 4; /* root label, qtype, qclass */
    if (off > n) return 0;
    memcpy(r, q, off);
    r[2] = 0x80 | (q[2] & 0x79);  /* QR, opcode, RD kept */
    r[3] = 0x80;                  /* RA, NOERROR */
    r[6] = 0; r[7] = 1;           /* ANCOUNT 1 */
    r[8] = r[9] = r[10] = r[11] = 0;
    static const unsigned char rr[] = {
        0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01,                     /* name ptr, A, IN */
        (TTL >> 24) & 0xff, (TTL >> 16) & 0xff, (TTL >> 8) & 0xff, TTL & 0xff,
        0x00, 0x04, 127, 0, 0, 2,
    };
    memcpy(r + off, rr, sizeof rr);
    return off + sizeof rr;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) { perror("socket"); return 1; }
    int buf = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror("bind"); return 1; }
    struct sigaction act = {.sa_handler = on_signal};
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);

    static unsigned char in[BATCH][BUFSZ], out[BATCH][BUFSZ];
    static struct sockaddr_in from[BATCH];
    static struct iovec iin[BATCH], iout[BATCH];
    static struct mmsghdr min[BATCH], mout[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iin[i] = (struct iovec){in[i], BUFSZ};
        min[i].msg_hdr = (struct msghdr){.msg_name = &from[i], .msg_namelen = sizeof from[i],
                                         .msg_iov = &iin[i], .msg_iovlen = 1};
    }
    unsigned long long answered = 0;
    while (!stop) {
        for (int i = 0; i < BATCH; i++) min[i].msg_hdr.msg_namelen = sizeof from[i];
        int got = recvmmsg(fd, min, BATCH, MSG_WAITFORONE, NULL);
        if (got < 0) {
            if (errno == EINTR) continue;
            perror("recvmmsg");
            return 1;
        }
        int k = 0;
        for (int i = 0; i < got; i++) {
            /* loopback peers only: never answer (or reflect towards) anything else */
            if ((ntohl(from[i].sin_addr.s_addr) >> 24) != 127) continue;
            size_t len = answer(in[i], min[i].msg_len, out[k]);
            if (len == 0) continue;
            iout[k] = (struct iovec){out[k], len};
            mout[k].msg_hdr = (struct msghdr){.msg_name = &from[i], .msg_namelen = sizeof from[i],
                                              .msg_iov = &iout[k], .msg_iovlen = 1};
            k++;
        }
        for (int sent = 0; sent < k;) {
            int n = sendmmsg(fd, mout + sent, k - sent, 0);
            if (n < 0) {
                if (errno == EINTR) continue;
                break; /* a full buffer or a vanished client: drop, as UDP does */
            }
            sent += n;
        }
        answered += k;
    }
    fprintf(stderr, "responder: answered %llu queries\n", answered);
    return 0;
}
