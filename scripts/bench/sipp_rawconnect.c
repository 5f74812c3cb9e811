/* LD_PRELOAD shim for SIPp's pcap player (scripts/bench/ivr.sh and remote.sh). SIPp 3.6.1 plays
   each call's pcap from a raw UDP socket of its own, and Linux hands every raw UDP socket a
   copy of each UDP packet to its address: with hundreds of calls keying, every RTP packet the
   server sends would be copied hundreds of times inside its sendto(). So after SIPp binds
   such a socket, connect it to 127.0.0.254: a connected raw socket receives only packets
   from its peer, and nothing sends from there. SIPp still sends with sendto(). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <sys/socket.h>

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real_bind)(int, const struct sockaddr *, socklen_t);
    if (!real_bind)
        real_bind = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    int result = real_bind(fd, addr, len);
    int type = 0, protocol = 0;
    socklen_t size = sizeof type;
    if (result != 0 || addr->sa_family != AF_INET
            || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) != 0 || type != SOCK_RAW)
        return result;
    size = sizeof protocol;
    if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &size) != 0
            || protocol != IPPROTO_UDP)
        return result;
    struct sockaddr_in nowhere = {.sin_family = AF_INET};
    nowhere.sin_addr.s_addr = htonl(0x7f0000fe);
    connect(fd, (const struct sockaddr *)&nowhere, sizeof nowhere);
    return result;
}
