// A hostile NVMe/RDMA host for the interop VM (rdma.sh builds it with cc -lrdmacm -libverbs):
// each case does one thing a broken or malicious peer might, and checks that the target ends
// that one connection (or refuses it) the way the NVMe-oF RDMA binding says. The shell then
// checks that the engine lives and other hosts' I/O went on.
//   rdma-abuse ADDR PORT CASE      CASE: bad-recfmt | bad-qid | big-hsqsize | runt-capsule |
//                                        bad-rkey | vanish-mid-transfer | storm
// (A short private data block cannot be sent: on RoCE the CM pads it to 56 bytes, so the
// target checks the fields, not the length.)
// Prints "PASS case: detail" or "FAIL case: why"; exits 0 on PASS.
#include <arpa/inet.h>
#include <infiniband/verbs.h>
#include <poll.h>
#include <rdma/rdma_cma.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char* g_case = "";
static int fail(const char* why) {
  printf("FAIL %s: %s\n", g_case, why);
  return 1;
}

struct conn {
  struct rdma_event_channel* ch;
  struct rdma_cm_id* id;
  struct ibv_pd* pd;
  struct ibv_cq* cq;
  struct ibv_mr* mr;
  uint8_t buf[4096];
};

// Waits for the next CM event; returns its type (or -1 on timeout) and the reject status.
static int next_event(struct conn* c, int timeout_ms, int* reject_sts) {
  struct pollfd p = {c->ch->fd, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) <= 0) return -1;
  struct rdma_cm_event* e;
  if (rdma_get_cm_event(c->ch, &e)) return -1;
  int type = e->event;
  if (reject_sts) *reject_sts = 0;
  if (type == RDMA_CM_EVENT_REJECTED && reject_sts && e->param.conn.private_data && e->param.conn.private_data_len >= 4) {
    const uint8_t* d = e->param.conn.private_data;
    *reject_sts = d[2] | d[3] << 8;
  }
  rdma_ack_cm_event(e);
  return type;
}

// Resolves, makes a QP and connects with `priv` (len bytes). Returns the event that answered.
static int dial(struct conn* c, const char* addr, int port, const uint8_t* priv, int len, int* reject_sts) {
  memset(c, 0, sizeof *c);
  c->ch = rdma_create_event_channel();
  if (!c->ch || rdma_create_id(c->ch, &c->id, NULL, RDMA_PS_TCP)) return -2;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, addr, &sa.sin_addr);
  if (rdma_resolve_addr(c->id, NULL, (struct sockaddr*)&sa, 2000) || next_event(c, 3000, NULL) != RDMA_CM_EVENT_ADDR_RESOLVED) return -3;
  if (rdma_resolve_route(c->id, 2000) || next_event(c, 3000, NULL) != RDMA_CM_EVENT_ROUTE_RESOLVED) return -4;
  c->pd = ibv_alloc_pd(c->id->verbs);
  c->cq = ibv_create_cq(c->id->verbs, 64, NULL, NULL, 0);
  struct ibv_qp_init_attr qa = {.send_cq = c->cq, .recv_cq = c->cq, .qp_type = IBV_QPT_RC, .cap = {.max_send_wr = 16, .max_recv_wr = 16, .max_send_sge = 1, .max_recv_sge = 1}};
  if (!c->pd || !c->cq || rdma_create_qp(c->id, c->pd, &qa)) return -5;
  c->mr = ibv_reg_mr(c->pd, c->buf, sizeof c->buf, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE);
  for (int i = 0; i < 8; i++) {  // room for responses
    struct ibv_sge s = {(uintptr_t)(c->buf + 2048 + 16 * i), 16, c->mr->lkey};
    struct ibv_recv_wr w = {.wr_id = 100 + i, .sg_list = &s, .num_sge = 1}, *bad;
    ibv_post_recv(c->id->qp, &w, &bad);
  }
  struct rdma_conn_param cp = {.private_data = priv, .private_data_len = len, .responder_resources = 1, .initiator_depth = 1, .retry_count = 7, .rnr_retry_count = 7};
  if (rdma_connect(c->id, &cp)) return -6;
  return next_event(c, 5000, reject_sts);
}

static void hang_up(struct conn* c) {
  if (c->id && c->id->qp) rdma_destroy_qp(c->id);
  if (c->mr) ibv_dereg_mr(c->mr);
  if (c->cq) ibv_destroy_cq(c->cq);
  if (c->pd) ibv_dealloc_pd(c->pd);
  if (c->id) rdma_destroy_id(c->id);
  if (c->ch) rdma_destroy_event_channel(c->ch);
}

static void request(uint8_t* p, uint16_t qid, uint16_t hrqsize, uint16_t hsqsize) {
  memset(p, 0, 32);  // RECFMT 0
  p[2] = qid & 0xff, p[3] = qid >> 8;
  p[4] = hrqsize & 0xff, p[5] = hrqsize >> 8;
  p[6] = hsqsize & 0xff, p[7] = hsqsize >> 8;
}

static int send_bytes(struct conn* c, const uint8_t* data, int len) {
  memcpy(c->buf, data, len);
  struct ibv_sge s = {(uintptr_t)c->buf, len, c->mr->lkey};
  struct ibv_send_wr w = {.wr_id = 1, .sg_list = &s, .num_sge = 1, .opcode = IBV_WR_SEND, .send_flags = IBV_SEND_SIGNALED}, *bad;
  return ibv_post_send(c->id->qp, &w, &bad);
}

// A Fabrics Connect capsule (admin queue) whose 1024 bytes of data sit behind a keyed SGL.
static void connect_capsule(uint8_t* sqe, uint64_t addr, uint32_t key) {
  memset(sqe, 0, 64);
  sqe[0] = 0x7f, sqe[1] = 0x40, sqe[2] = 7, sqe[4] = 0x01;  // Fabrics, PSDT SGL, cid 7, Connect
  memcpy(sqe + 24, &addr, 8);
  sqe[32] = 0x00, sqe[33] = 0x04, sqe[34] = 0;  // length 1024
  memcpy(sqe + 35, &key, 4);
  sqe[39] = 0x40;                                  // keyed data block
  sqe[44] = 31;                                    // SQSIZE
}

// The target must end the connection: DISCONNECTED within 5 s.
static int expect_disconnect(struct conn* c, const char* detail) {
  for (int i = 0; i < 3; i++) {
    int e = next_event(c, 5000, NULL);
    if (e == RDMA_CM_EVENT_DISCONNECTED) {
      printf("PASS %s: %s\n", g_case, detail);
      return 0;
    }
    if (e < 0) break;
  }
  return fail("the target did not end the connection within 5 s");
}

int main(int argc, char** argv) {
  if (argc != 4) return fprintf(stderr, "usage: rdma-abuse ADDR PORT CASE\n"), 2;
  const char* addr = argv[1];
  int port = atoi(argv[2]);
  g_case = argv[3];
  uint8_t priv[32];
  struct conn c;
  int sts = 0;
  if (!strcmp(g_case, "bad-recfmt")) {
    request(priv, 0, 32, 31);
    priv[0] = 1;
    int e = dial(&c, addr, port, priv, 32, &sts);
    if (e != RDMA_CM_EVENT_REJECTED || sts != 2) return fail("record format 1 was not rejected with STS 2 (invalid RECFMT)");
    printf("PASS %s: rejected, STS %d\n", g_case, sts);
  } else if (!strcmp(g_case, "bad-qid")) {
    request(priv, 65, 32, 31);
    int e = dial(&c, addr, port, priv, 32, &sts);
    if (e != RDMA_CM_EVENT_REJECTED || sts != 3) return fail("queue id 65 was not rejected with STS 3 (invalid QID)");
    printf("PASS %s: rejected, STS %d\n", g_case, sts);
  } else if (!strcmp(g_case, "big-hsqsize")) {
    request(priv, 1, 1024, 1023);
    int e = dial(&c, addr, port, priv, 32, &sts);
    if (e != RDMA_CM_EVENT_REJECTED || sts != 4) return fail("HSQSIZE 1023 was not rejected with STS 4 (invalid HSQSIZE)");
    printf("PASS %s: rejected, STS %d\n", g_case, sts);
  } else if (!strcmp(g_case, "runt-capsule")) {
    request(priv, 0, 32, 31);
    if (dial(&c, addr, port, priv, 32, NULL) != RDMA_CM_EVENT_ESTABLISHED) return fail("could not connect");
    uint8_t runt[10] = {0x7f};
    send_bytes(&c, runt, sizeof runt);
    return expect_disconnect(&c, "a 10-byte capsule ended the connection");
  } else if (!strcmp(g_case, "bad-rkey")) {
    request(priv, 0, 32, 31);
    if (dial(&c, addr, port, priv, 32, NULL) != RDMA_CM_EVENT_ESTABLISHED) return fail("could not connect");
    uint8_t sqe[64];
    connect_capsule(sqe, 0x1000, 0xdeadbeef);  // memory this host never registered
    send_bytes(&c, sqe, 64);
    return expect_disconnect(&c, "a keyed SGL outside registered memory ended the connection");
  } else if (!strcmp(g_case, "vanish-mid-transfer")) {
    // Ask the target to READ 1024 bytes from us, then vanish before it can: its READ fails or
    // its QP sees the peer gone; either way only this connection ends.
    for (int round = 0; round < 20; round++) {
      request(priv, 0, 32, 31);
      if (dial(&c, addr, port, priv, 32, NULL) != RDMA_CM_EVENT_ESTABLISHED) return fail("could not connect");
      uint8_t sqe[64];
      connect_capsule(sqe, (uintptr_t)(c.buf + 1024), c.mr->rkey);
      send_bytes(&c, sqe, 64);
      hang_up(&c);
    }
    printf("PASS %s: 20 hosts vanished with a transfer pending\n", g_case);
  } else if (!strcmp(g_case, "storm")) {
    static struct conn many[100];
    int up = 0;
    for (int i = 0; i < 100; i++) {
      request(priv, 0, 32, 31);
      if (dial(&many[i], addr, port, priv, 32, NULL) == RDMA_CM_EVENT_ESTABLISHED) up++;
    }
    sleep(1);
    for (int i = 0; i < 100; i++) hang_up(&many[i]);
    if (up != 100) {
      char why[64];
      snprintf(why, sizeof why, "only %d of 100 queue pairs connected", up);
      return fail(why);
    }
    printf("PASS %s: 100 queue pairs connected and went\n", g_case);
  } else {
    return fprintf(stderr, "unknown case %s\n", g_case), 2;
  }
  return 0;
}
