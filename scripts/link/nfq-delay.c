/*
 * nfq-delay: holds every packet of one NFQUEUE for a fixed delay, then accepts it.
 *
 * This kernel has no netem, so the simulated link's round-trip delay is added here, on the
 * receiving side of the veth pair (delaying on the sender's side starves TCP; see
 * shared/NOTES.md). The delay is constant, so packets leave in arrival order and a FIFO ring
 * is enough. Install the rule with --queue-bypass so traffic flows if this program dies.
 *
 * Usage: nfq-delay QUEUE_NUM DELAY_MS
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#define RING_SLOTS 65536

struct held_packet {
  uint32_t id;
  int64_t due_ns;
};

static struct held_packet ring[RING_SLOTS];
static unsigned ring_head, ring_tail;
static int64_t delay_ns;
static volatile sig_atomic_t stopping;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int on_packet(struct nfq_q_handle *queue, struct nfgenmsg *msg, struct nfq_data *nfa,
                     void *data) {
  (void)msg;
  (void)data;
  struct nfqnl_msg_packet_hdr *header = nfq_get_msg_packet_hdr(nfa);
  if (header == NULL) return 0;
  uint32_t id = ntohl(header->packet_id);

  /* A full ring means the link is hopelessly overloaded: pass the packet on at once. */
  if (ring_tail - ring_head >= RING_SLOTS)
    return nfq_set_verdict(queue, id, NF_ACCEPT, 0, NULL);

  ring[ring_tail % RING_SLOTS] = (struct held_packet){id, now_ns() + delay_ns};
  ring_tail++;
  return 0;
}

static void release_due(struct nfq_q_handle *queue) {
  int64_t now = now_ns();
  while (ring_head != ring_tail && ring[ring_head % RING_SLOTS].due_ns <= now) {
    nfq_set_verdict(queue, ring[ring_head % RING_SLOTS].id, NF_ACCEPT, 0, NULL);
    ring_head++;
  }
}

static int poll_timeout_ms(void) {
  if (ring_head == ring_tail) return 200;
  int64_t wait_ns = ring[ring_head % RING_SLOTS].due_ns - now_ns();
  if (wait_ns <= 0) return 0;
  return (int)(wait_ns / 1000000) + 1;
}

static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: nfq-delay QUEUE_NUM DELAY_MS\n");
    return 2;
  }
  int queue_num = atoi(argv[1]);
  delay_ns = (int64_t)atoi(argv[2]) * 1000000;
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);

  struct nfq_handle *handle = nfq_open();
  if (handle == NULL) {
    perror("nfq-delay: nfq_open");
    return 1;
  }
  struct nfq_q_handle *queue = nfq_create_queue(handle, queue_num, &on_packet, NULL);
  if (queue == NULL) {
    perror("nfq-delay: nfq_create_queue (is another nfq-delay using this queue?)");
    return 1;
  }
  nfq_set_mode(queue, NFQNL_COPY_META, 0);
  nfq_set_queue_maxlen(queue, RING_SLOTS);
  nfnl_rcvbufsiz(nfq_nfnlh(handle), 16 * 1024 * 1024);

  int fd = nfq_fd(handle);
  char buf[65536];
  while (!stopping) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int ready = poll(&pfd, 1, poll_timeout_ms());
    if (ready > 0) {
      /* Drain what is queued without blocking, so bursts do not wait a poll round each. */
      for (;;) {
        ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (got < 0) break;
        nfq_handle_packet(handle, buf, (int)got);
      }
    }
    release_due(queue);
  }

  /* Let everything still held through before the queue goes away. */
  while (ring_head != ring_tail) {
    nfq_set_verdict(queue, ring[ring_head % RING_SLOTS].id, NF_ACCEPT, 0, NULL);
    ring_head++;
  }
  nfq_destroy_queue(queue);
  nfq_close(handle);
  return 0;
}
