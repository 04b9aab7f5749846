// Command netcheck serves and probes TCP and UDP ports for the node tests. Busybox's nc
// here has no UDP, and its exit status does not tell a refused connection from a dropped
// one; NetworkPolicy tests need exactly that difference.
//
//	netcheck serve tcp:8080 tcp:9090 udp:5353   answers "riposte <proto>:<port>" on each
//	netcheck probe tcp|udp IP:PORT TIMEOUT      prints connected, refused or timeout
//
// probe exits 0 when connected and 1 otherwise, so that it can serve as an exec probe.
package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) >= 3 && os.Args[1] == "serve" {
		serve(os.Args[2:])
		return
	}
	if len(os.Args) == 5 && os.Args[1] == "probe" {
		timeout, err := time.ParseDuration(os.Args[4])
		if err != nil {
			fail("bad timeout %q: %v", os.Args[4], err)
		}
		outcome := probe(os.Args[2], os.Args[3], timeout)
		fmt.Println(outcome)
		if !strings.HasPrefix(outcome, "connected") {
			os.Exit(1)
		}
		return
	}
	fail("usage: netcheck serve PROTO:PORT... | netcheck probe tcp|udp IP:PORT TIMEOUT")
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "netcheck: "+format+"\n", args...)
	os.Exit(2)
}

func serve(endpoints []string) {
	for _, endpoint := range endpoints {
		proto, port, ok := strings.Cut(endpoint, ":")
		answer := []byte("riposte " + endpoint + "\n")
		switch {
		case ok && proto == "tcp":
			listener, err := net.Listen("tcp", ":"+port)
			if err != nil {
				fail("listen %s: %v", endpoint, err)
			}
			go func() {
				for {
					conn, err := listener.Accept()
					if err != nil {
						fail("accept %s: %v", endpoint, err)
					}
					fmt.Printf("%s from %s\n", endpoint, conn.RemoteAddr())
					conn.Write(answer)
					conn.Close()
				}
			}()
		case ok && proto == "udp":
			conn, err := net.ListenPacket("udp", ":"+port)
			if err != nil {
				fail("listen %s: %v", endpoint, err)
			}
			go func() {
				buffer := make([]byte, 1500)
				for {
					_, from, err := conn.ReadFrom(buffer)
					if err != nil {
						fail("read %s: %v", endpoint, err)
					}
					fmt.Printf("%s from %s\n", endpoint, from)
					conn.WriteTo(answer, from)
				}
			}()
		default:
			fail("bad endpoint %q, want tcp:PORT or udp:PORT", endpoint)
		}
	}
	fmt.Println("serving", strings.Join(endpoints, " "))
	select {}
}

// probe says how a connection to address went: "connected" and the answer if one came
// (a TCP connection is made once the handshake is done, whether or not the server says
// anything; a UDP exchange needs the answer), "refused" (the peer or a firewall rejected
// it: RST or ICMP unreachable), or "timeout" (nothing came back, as when a packet is
// dropped).
func probe(proto, address string, timeout time.Duration) string {
	if proto != "tcp" && proto != "udp" {
		fail("bad protocol %q, want tcp or udp", proto)
	}
	deadline := time.Now().Add(timeout)
	conn, err := net.DialTimeout(proto, address, timeout)
	if err != nil {
		return classify(err)
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	if proto == "udp" {
		if _, err := conn.Write([]byte("probe\n")); err != nil {
			return classify(err)
		}
	}
	buffer := make([]byte, 256)
	n, err := conn.Read(buffer)
	if n > 0 {
		return "connected " + strings.TrimSpace(string(buffer[:n]))
	}
	if proto == "tcp" {
		return "connected"
	}
	return classify(err)
}

func classify(err error) string {
	var netErr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return "refused"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	default:
		return "error " + err.Error()
	}
}
