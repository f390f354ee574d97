// Command dtlsresume is the project's command line: a CoAP-over-DTLS server
// (serve) and client (get, put, post, delete, fetch, patch, ipatch, observe), a DTLS echo server and client
// (listen, dial), a demo of every resumption type (demo), handshake costs
// beside pion/dtls (bench), the peer matrix against installed
// third-party stacks (interop), and many simulated devices against one
// server, ours beside pion/dtls in one run (loadtest). Run "dtlsresume help" for the list and
// "dtlsresume COMMAND -h" for a command's flags.
package main
