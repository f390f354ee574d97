package wiresharktest

import (
	"encoding/binary"
	"net/netip"
	"os"
)

// Datagram is one UDP datagram of a hand-made capture.
type Datagram struct {
	Src, Dst netip.AddrPort // IPv4
	Payload  []byte
}

// linktypeRaw is LINKTYPE_RAW: each record is an IP packet.
const linktypeRaw = 101

// WritePcap writes datagrams to path as a classic pcap file of IPv4/UDP
// packets, one second apart (the UDP checksum is 0: none, which IPv4
// allows).
func WritePcap(path string, datagrams []Datagram) error {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, 0xa1b2c3d4) // magic, microseconds
	b = binary.LittleEndian.AppendUint16(b, 2)          // version 2.4
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = binary.LittleEndian.AppendUint32(b, 0) // thiszone
	b = binary.LittleEndian.AppendUint32(b, 0) // sigfigs
	b = binary.LittleEndian.AppendUint32(b, 65535)
	b = binary.LittleEndian.AppendUint32(b, linktypeRaw)
	for i, d := range datagrams {
		pkt := ipv4UDP(d)
		b = binary.LittleEndian.AppendUint32(b, uint32(1_700_000_000+i)) // seconds
		b = binary.LittleEndian.AppendUint32(b, 0)                       // microseconds
		b = binary.LittleEndian.AppendUint32(b, uint32(len(pkt)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(pkt)))
		b = append(b, pkt...)
	}
	return os.WriteFile(path, b, 0o644)
}

// ipv4UDP builds the IPv4 packet carrying d.
func ipv4UDP(d Datagram) []byte {
	udpLen := 8 + len(d.Payload)
	ip := make([]byte, 20, 20+udpLen)
	ip[0] = 0x45 // version 4, 5 words of header
	binary.BigEndian.PutUint16(ip[2:], uint16(20+udpLen))
	ip[8] = 64 // TTL
	ip[9] = 17 // UDP
	src, dst := d.Src.Addr().As4(), d.Dst.Addr().As4()
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	ip = binary.BigEndian.AppendUint16(ip, d.Src.Port())
	ip = binary.BigEndian.AppendUint16(ip, d.Dst.Port())
	ip = binary.BigEndian.AppendUint16(ip, uint16(udpLen))
	ip = binary.BigEndian.AppendUint16(ip, 0)
	return append(ip, d.Payload...)
}
