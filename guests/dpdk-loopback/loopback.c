/* pvspec dpdk-loopback: DPDK's vhost-user virtio-net back-end (the net_vhost PMD over
 * rte_vhost) with every frame the driver transmits handed back on its receive queue.
 *
 * Debian ships DPDK's libraries but no testpmd; this is the smallest program that makes
 * rte_vhost serve a vhost-user socket as a network device: EAL with the arguments it is
 * given (conformance/vhost_user/targets.py passes --no-huge --no-pci --vdev
 * net_vhost0,iface=SOCK,...), one port, one RX and one TX queue, a mempool, and a loop
 * rx_burst -> tx_burst.  In net_vhost terms rx_burst dequeues what the guest's driver put
 * on its transmit queue and tx_burst enqueues into the driver's receive buffers, so the
 * suite, acting as the driver, gets back what it sent.
 *
 * It prints "ready" on stdout once the port is started, then "stats rx=N tx=N drop=N"
 * when it stops on SIGTERM or SIGINT.  Exit status: 0 stopped, 2 EAL/port setup failed.
 * When the loop is idle it sleeps 20 us between polls, so it does not keep a core busy.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#define BURST 32
#define RING 512
#define MBUFS 4095

static volatile sig_atomic_t quit;

static void on_signal(int sig)
{
    (void)sig;
    quit = 1;
}

static int fail(const char *what, int err)
{
    fprintf(stderr, "dpdk-loopback: %s failed: %s\n", what, strerror(err < 0 ? -err : err));
    return 2;
}

int main(int argc, char **argv)
{
    if (rte_eal_init(argc, argv) < 0)
        return fail("rte_eal_init", rte_errno);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    const uint16_t port = 0;
    if (!rte_eth_dev_is_valid_port(port)) {
        fprintf(stderr, "dpdk-loopback: no ethdev port (is --vdev net_vhost0,... given?)\n");
        return 2;
    }
    struct rte_mempool *pool = rte_pktmbuf_pool_create(
        "pvspec_mbufs", MBUFS, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, (int)rte_socket_id());
    if (pool == NULL)
        return fail("rte_pktmbuf_pool_create", rte_errno);
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof conf);
    int rc = rte_eth_dev_configure(port, 1, 1, &conf);
    if (rc < 0)
        return fail("rte_eth_dev_configure", rc);
    int socket = rte_eth_dev_socket_id(port);
    if (socket < 0)
        socket = 0;
    rc = rte_eth_rx_queue_setup(port, 0, RING, (unsigned)socket, NULL, pool);
    if (rc < 0)
        return fail("rte_eth_rx_queue_setup", rc);
    rc = rte_eth_tx_queue_setup(port, 0, RING, (unsigned)socket, NULL);
    if (rc < 0)
        return fail("rte_eth_tx_queue_setup", rc);
    rc = rte_eth_dev_start(port);
    if (rc < 0)
        return fail("rte_eth_dev_start", rc);
    printf("ready\n");
    fflush(stdout);

    uint64_t rx = 0, tx = 0, drop = 0;
    const struct timespec nap = {0, 20000};
    while (!quit) {
        struct rte_mbuf *bufs[BURST];
        uint16_t n = rte_eth_rx_burst(port, 0, bufs, BURST);
        if (n == 0) {
            nanosleep(&nap, NULL);
            continue;
        }
        rx += n;
        uint16_t sent = rte_eth_tx_burst(port, 0, bufs, n);
        tx += sent;
        for (uint16_t i = sent; i < n; i++) { /* no receive buffers: the frame is lost */
            rte_pktmbuf_free(bufs[i]);
            drop++;
        }
    }
    printf("stats rx=%llu tx=%llu drop=%llu\n", (unsigned long long)rx,
           (unsigned long long)tx, (unsigned long long)drop);
    fflush(stdout);
    rte_eth_dev_stop(port);
    rte_eth_dev_close(port);
    rte_eal_cleanup();
    return 0;
}
