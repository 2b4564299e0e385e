/*
 * cload: a plain C closed-loop UDP DNS load generator, the yardstick for `loadgen`.
 *
 * bench/compare.sh runs it beside loadgen against the same servers so that a reader can see
 * the Rust load generator is not what limits a row: if loadgen reached fewer queries per
 * second than this against the no-op responder, loadgen would be the bottleneck.
 *
 * Same shape as loadgen's load loop (bench/loadgen/src/load.rs), deliberately simple: one
 * thread, N connected sockets, W outstanding queries per socket; free slots are filled and
 * sent with one sendmmsg per socket, replies read with recvmmsg(MSG_DONTWAIT), poll(1 ms) when
 * nothing arrived. Each query has a random ID not in flight on its socket, a question from the
 * query file and, when a subnet file is given, an ECS option for a random subnet from it. A
 * reply counts when it comes from the server, has QR set, a known ID and echoes the question.
 * A query unanswered within the timeout is lost and its slot reused.
 *
 * Prints one JSON line with the fields compare_table.py reads from loadgen's --json output.
 * Sends only to 127.0.0.0/8 and stops by itself after --duration plus the timeout.
 *
 * Build: gcc -O2 -o cload cload.c
 * Usage: cload --server 127.0.0.1:PORT --queries FILE [--subnets FILE] [--duration S]
 *              [--sockets N] [--outstanding W] [--timeout-ms T]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define QUERY_MAX 512
#define REPLY_MAX 2048
#define MAX_SOCKETS 64
#define NO_SLOT 0xffffffffu
/* Latency histogram: 10 us buckets up to 2 s, then one overflow bucket. */
#define HIST_STEP_NS 10000ull
#define HIST_BUCKETS 200001

struct question { uint8_t wire[260]; size_t len; }; /* name + type + class */
struct subnet { uint16_t family; uint8_t prefix; uint8_t addr[16]; };
struct slot { uint64_t sent_ns; uint32_t question; uint16_t id; int busy; };
struct flow {
    int fd;
    struct slot *slots;
    uint32_t *free_list;
    size_t n_free;
    uint32_t id_slot[65536];
    uint64_t rng;
};

static struct question *questions;
static size_t n_questions;
static struct subnet *subnets;
static size_t n_subnets;
static uint64_t hist[HIST_BUCKETS];
static uint64_t sent, completed, lost, unexpected, mismatched, truncated, rcodes[16];
static uint64_t latency_sum_ns;

static void die(const char *what) {
    fprintf(stderr, "cload: %s%s%s\n", what, errno ? ": " : "", errno ? strerror(errno) : "");
    exit(1);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t next_rand(uint64_t *s) { /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

static int qtype_code(const char *t) {
    static const struct { const char *name; int code; } types[] = {
        {"A", 1}, {"NS", 2}, {"CNAME", 5}, {"SOA", 6}, {"PTR", 12}, {"MX", 15},
        {"TXT", 16}, {"AAAA", 28}, {"SRV", 33}, {"ANY", 255}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcasecmp(t, types[i].name) == 0) return types[i].code;
    return -1;
}

/* "name TYPE" lines, as dnsperf and loadgen read them. */
static void read_queries(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open the query file");
    char line[512], name[300], type[32];
    size_t cap = 16;
    questions = malloc(cap * sizeof *questions);
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || sscanf(line, "%299s %31s", name, type) != 2) continue;
        int code = qtype_code(type);
        if (code < 0) { errno = 0; die("unknown query type in the query file"); }
        if (n_questions == cap) questions = realloc(questions, (cap *= 2) * sizeof *questions);
        struct question *q = &questions[n_questions];
        size_t n = 0;
        char *label = name, *dot;
        while (*label) {
            dot = strchr(label, '.');
            size_t len = dot ? (size_t)(dot - label) : strlen(label);
            if (len == 0 || len > 63 || n + len + 6 > sizeof q->wire) { errno = 0; die("bad name in the query file"); }
            q->wire[n++] = (uint8_t)len;
            memcpy(q->wire + n, label, len);
            n += len;
            label += len + (dot ? 1 : 0);
        }
        q->wire[n++] = 0;
        q->wire[n++] = (uint8_t)(code >> 8);
        q->wire[n++] = (uint8_t)code;
        q->wire[n++] = 0;
        q->wire[n++] = 1;
        q->len = n;
        n_questions++;
    }
    fclose(f);
    if (!n_questions) { errno = 0; die("no questions in the query file"); }
}

/* First field of each line is a CIDR (the subnets tool's output). */
static void read_subnets(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open the subnet file");
    char line[256], cidr[80];
    size_t cap = 1024;
    subnets = malloc(cap * sizeof *subnets);
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "%79s", cidr) != 1 || cidr[0] == '#') continue;
        char *slash = strchr(cidr, '/');
        if (!slash) continue;
        *slash = 0;
        if (n_subnets == cap) subnets = realloc(subnets, (cap *= 2) * sizeof *subnets);
        struct subnet *s = &subnets[n_subnets];
        memset(s, 0, sizeof *s);
        s->prefix = (uint8_t)atoi(slash + 1);
        if (inet_pton(AF_INET, cidr, s->addr) == 1) s->family = 1;
        else if (inet_pton(AF_INET6, cidr, s->addr) == 1) s->family = 2;
        else continue;
        n_subnets++;
    }
    fclose(f);
}

/* Header, question, OPT (payload 1232) with an optional ECS option. */
static size_t build_query(uint8_t *out, uint16_t id, const struct question *q, const struct subnet *s) {
    size_t n = 0;
    out[n++] = (uint8_t)(id >> 8);
    out[n++] = (uint8_t)id;
    out[n++] = 0; /* RD clear: we ask authoritative servers */
    out[n++] = 0;
    static const uint8_t counts[] = {0, 1, 0, 0, 0, 0, 0, 1};
    memcpy(out + n, counts, sizeof counts);
    n += sizeof counts;
    memcpy(out + n, q->wire, q->len);
    n += q->len;
    static const uint8_t opt[] = {0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0};
    memcpy(out + n, opt, sizeof opt);
    n += sizeof opt;
    if (!s) {
        out[n++] = 0;
        out[n++] = 0;
        return n;
    }
    size_t addr_len = (s->prefix + 7u) / 8u;
    size_t opt_len = 4 + 4 + addr_len;
    out[n++] = (uint8_t)(opt_len >> 8);
    out[n++] = (uint8_t)opt_len;
    out[n++] = 0;
    out[n++] = 8; /* EDNS Client Subnet */
    out[n++] = (uint8_t)((4 + addr_len) >> 8);
    out[n++] = (uint8_t)(4 + addr_len);
    out[n++] = 0;
    out[n++] = (uint8_t)s->family;
    out[n++] = s->prefix;
    out[n++] = 0;
    memcpy(out + n, s->addr, addr_len);
    return n + addr_len;
}

static uint8_t query_buf[MAX_SOCKETS][BATCH][QUERY_MAX];
static uint8_t reply_buf[BATCH][REPLY_MAX];

static void fill_and_send(struct flow *fl, int sock, uint64_t now) {
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    uint32_t picked[BATCH];
    int n = 0;
    while (n < BATCH && fl->n_free) {
        uint32_t slot = fl->free_list[--fl->n_free];
        uint16_t id;
        do id = (uint16_t)next_rand(&fl->rng); while (fl->id_slot[id] != NO_SLOT);
        uint32_t qi = (uint32_t)(next_rand(&fl->rng) % n_questions);
        const struct subnet *s = n_subnets ? &subnets[next_rand(&fl->rng) % n_subnets] : NULL;
        size_t len = build_query(query_buf[sock][n], id, &questions[qi], s);
        fl->slots[slot] = (struct slot){now, qi, id, 1};
        fl->id_slot[id] = slot;
        iov[n] = (struct iovec){query_buf[sock][n], len};
        memset(&msgs[n], 0, sizeof msgs[n]);
        msgs[n].msg_hdr.msg_iov = &iov[n];
        msgs[n].msg_hdr.msg_iovlen = 1;
        picked[n++] = slot;
    }
    int done = 0;
    while (done < n) {
        int rc = sendmmsg(fl->fd, msgs + done, (unsigned)(n - done), 0);
        if (rc < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == ENOBUFS || errno == ECONNREFUSED) break;
            die("sendmmsg");
        }
        done += rc;
    }
    sent += (uint64_t)done;
    for (int i = done; i < n; i++) { /* not sent: free the slots again */
        fl->id_slot[fl->slots[picked[i]].id] = NO_SLOT;
        fl->slots[picked[i]].busy = 0;
        fl->free_list[fl->n_free++] = picked[i];
    }
}

static int receive(struct flow *fl, uint64_t start, uint64_t *last_reply) {
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iov[i] = (struct iovec){reply_buf[i], REPLY_MAX};
        memset(&msgs[i], 0, sizeof msgs[i]);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int rc = recvmmsg(fl->fd, msgs, BATCH, MSG_DONTWAIT, NULL);
    if (rc < 0) {
        if (errno == EAGAIN || errno == EINTR || errno == ECONNREFUSED) return 0;
        die("recvmmsg");
    }
    uint64_t now = now_ns();
    for (int i = 0; i < rc; i++) {
        const uint8_t *r = reply_buf[i];
        size_t len = msgs[i].msg_len;
        if (len < 12 || !(r[2] & 0x80)) { unexpected++; continue; }
        uint16_t id = (uint16_t)(r[0] << 8 | r[1]);
        uint32_t slot = fl->id_slot[id];
        if (slot == NO_SLOT) { unexpected++; continue; }
        const struct question *q = &questions[fl->slots[slot].question];
        if (len < 12 + q->len || r[5] != 1 || memcmp(r + 12, q->wire, q->len) != 0) {
            mismatched++;
            continue;
        }
        if (r[2] & 0x02) truncated++;
        rcodes[r[3] & 0x0f]++;
        uint64_t lat = now - fl->slots[slot].sent_ns;
        latency_sum_ns += lat;
        uint64_t b = lat / HIST_STEP_NS;
        hist[b < HIST_BUCKETS - 1 ? b : HIST_BUCKETS - 1]++;
        completed++;
        fl->id_slot[id] = NO_SLOT;
        fl->slots[slot].busy = 0;
        fl->free_list[fl->n_free++] = slot;
    }
    if (rc > 0) *last_reply = now - start;
    return rc;
}

static void expire(struct flow *fl, uint32_t outstanding, uint64_t now, uint64_t timeout) {
    for (uint32_t i = 0; i < outstanding; i++) {
        struct slot *s = &fl->slots[i];
        if (s->busy && now - s->sent_ns >= timeout) {
            lost++;
            fl->id_slot[s->id] = NO_SLOT;
            s->busy = 0;
            fl->free_list[fl->n_free++] = i;
        }
    }
}

static double percentile_us(double p) {
    uint64_t want = (uint64_t)(p * (double)completed), seen = 0;
    for (size_t b = 0; b < HIST_BUCKETS; b++) {
        seen += hist[b];
        if (seen > want) return (double)(b * HIST_STEP_NS + HIST_STEP_NS / 2) / 1e3;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *server = NULL, *queries = NULL, *subnet_file = NULL;
    double duration = 10;
    int sockets = 4;
    uint32_t outstanding = 64;
    uint64_t timeout_ms = 1000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--server")) server = argv[i + 1];
        else if (!strcmp(argv[i], "--queries")) queries = argv[i + 1];
        else if (!strcmp(argv[i], "--subnets")) subnet_file = argv[i + 1];
        else if (!strcmp(argv[i], "--duration")) duration = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--sockets")) sockets = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--outstanding")) outstanding = (uint32_t)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--timeout-ms")) timeout_ms = (uint64_t)atoll(argv[i + 1]);
        else { errno = 0; die("unknown option (see the comment at the top of cload.c)"); }
    }
    errno = 0;
    if (!server || !queries) die("--server and --queries are required");
    if (duration <= 0 || duration > 600) die("--duration must be in (0, 600]");
    if (sockets < 1 || sockets > MAX_SOCKETS) die("--sockets must be in 1..64");
    if (outstanding < 1 || outstanding > 65535) die("--outstanding must be in 1..65535");

    char host[64];
    const char *colon = strrchr(server, ':');
    if (!colon || (size_t)(colon - server) >= sizeof host) die("--server must be IPV4:PORT");
    memcpy(host, server, (size_t)(colon - server));
    host[colon - server] = 0;
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &to.sin_addr) != 1) die("--server must be IPV4:PORT");
    if ((ntohl(to.sin_addr.s_addr) >> 24) != 127) die("--server must be on loopback (127.0.0.0/8)");

    read_queries(queries);
    if (subnet_file) read_subnets(subnet_file);

    static struct flow flows[MAX_SOCKETS];
    struct pollfd pfds[MAX_SOCKETS];
    for (int s = 0; s < sockets; s++) {
        struct flow *fl = &flows[s];
        fl->fd = socket(AF_INET, SOCK_DGRAM, 0);
        if (fl->fd < 0) die("socket");
        int size = 4 << 20;
        setsockopt(fl->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        setsockopt(fl->fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        if (connect(fl->fd, (struct sockaddr *)&to, sizeof to) < 0) die("connect");
        fl->slots = calloc(outstanding, sizeof *fl->slots);
        fl->free_list = malloc(outstanding * sizeof *fl->free_list);
        for (uint32_t i = 0; i < outstanding; i++) fl->free_list[i] = outstanding - 1 - i;
        fl->n_free = outstanding;
        memset(fl->id_slot, 0xff, sizeof fl->id_slot);
        fl->rng = 0x9e3779b97f4a7c15ull * (uint64_t)(s + 1);
        pfds[s] = (struct pollfd){.fd = fl->fd, .events = POLLIN};
    }

    uint64_t start = now_ns(), send_until = (uint64_t)(duration * 1e9);
    uint64_t timeout = timeout_ms * 1000000ull, last_reply = 0, next_expiry = 0;
    for (;;) {
        uint64_t now = now_ns() - start;
        int sending = now < send_until;
        if (!sending) {
            uint64_t in_flight = 0;
            for (int s = 0; s < sockets; s++) in_flight += outstanding - flows[s].n_free;
            if (in_flight == 0 || now >= send_until + timeout) {
                lost += in_flight;
                break;
            }
        }
        if (sending)
            for (int s = 0; s < sockets; s++) fill_and_send(&flows[s], s, now + start);
        int got = 0;
        for (int s = 0; s < sockets; s++) got += receive(&flows[s], start, &last_reply);
        if (now >= next_expiry) {
            for (int s = 0; s < sockets; s++) expire(&flows[s], outstanding, now + start, timeout);
            next_expiry = now + timeout / 4;
        }
        if (!got && poll(pfds, (nfds_t)sockets, 1) < 0 && errno != EINTR) die("poll");
    }
    uint64_t end = now_ns() - start;
    if (end > send_until && last_reply < end) end = last_reply > send_until ? last_reply : send_until;
    double secs = (double)end / 1e9;

    static const char *names[16] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP",
                                    "REFUSED", "YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH",
                                    "NOTZONE", "RCODE11", "RCODE12", "RCODE13", "RCODE14", "RCODE15"};
    printf("{\"tool\":\"cload\",\"qps\":%.1f,\"sent\":%llu,\"completed\":%llu,\"lost\":%llu,"
           "\"unexpected\":%llu,\"mismatched\":%llu,\"truncated\":%llu,\"run_time_s\":%.3f,\"rcodes\":{",
           secs > 0 ? (double)completed / secs : 0.0, (unsigned long long)sent,
           (unsigned long long)completed, (unsigned long long)lost, (unsigned long long)unexpected,
           (unsigned long long)mismatched, (unsigned long long)truncated, secs);
    int first = 1;
    for (int i = 0; i < 16; i++) {
        if (!rcodes[i]) continue;
        printf("%s\"%s\":%llu", first ? "" : ",", names[i], (unsigned long long)rcodes[i]);
        first = 0;
    }
    printf("},\"latency_us\":{\"avg\":%.1f,\"p50\":%.1f,\"p99\":%.1f}}\n",
           completed ? (double)latency_sum_ns / (double)completed / 1e3 : 0.0,
           percentile_us(0.50), percentile_us(0.99));
    return 0;
}
