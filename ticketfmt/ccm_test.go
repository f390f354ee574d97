package ticketfmt

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/pion/dtls/v3/pkg/crypto/ccm"
)

// refCCM is CCM written for this test directly from NIST SP 800-38C §6.1
// (generation-encryption): formatting function of Appendix A.2, CBC-MAC over
// B0..Br, counter blocks of A.3, C = (P xor MSB_Plen(S1..Sm)) || (T xor MSB_t(S0)).
// Only what the tests need: associated data shorter than 2^16-2^8 bytes.
func refCCM(key, nonce, adata, payload []byte, tagLen int) []byte {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	q := 15 - len(nonce) // octets of the payload length field

	// A.2.1: B0 = flags || N || Q.
	var b0 [16]byte
	flags := byte(((tagLen - 2) / 2) << 3)
	flags |= byte(q - 1)
	if len(adata) > 0 {
		flags |= 1 << 6
	}
	b0[0] = flags
	copy(b0[1:], nonce)
	plen := uint64(len(payload))
	for i := 15; i > 15-q; i-- {
		b0[i] = byte(plen)
		plen >>= 8
	}

	// A.2.2 and A.2.3: the formatted input B = B0 || [a]16 || A || pad || P || pad.
	formatted := append([]byte(nil), b0[:]...)
	if len(adata) > 0 {
		a := binary.BigEndian.AppendUint16(nil, uint16(len(adata)))
		a = append(a, adata...)
		formatted = append(formatted, zeroPad(a)...)
	}
	formatted = append(formatted, zeroPad(payload)...)

	// CBC-MAC: Y0 = CIPH(B0), Yi = CIPH(Bi xor Yi-1); T = MSB_t(Yr).
	var y [16]byte
	for i := 0; i < len(formatted); i += 16 {
		for j := range 16 {
			y[j] ^= formatted[i+j]
		}
		block.Encrypt(y[:], y[:])
	}
	tag := y[:tagLen]

	// A.3: Ctr_j = flags' || N || [j]_q with flags' = q-1; S_j = CIPH(Ctr_j).
	ctr := func(j uint64) [16]byte {
		var c [16]byte
		c[0] = byte(q - 1)
		copy(c[1:], nonce)
		for i := 15; i > 15-q; i-- {
			c[i] = byte(j)
			j >>= 8
		}
		var s [16]byte
		block.Encrypt(s[:], c[:])
		return s
	}
	out := make([]byte, 0, len(payload)+tagLen)
	for i := 0; i < len(payload); i += 16 {
		s := ctr(uint64(i/16) + 1)
		for j := i; j < min(i+16, len(payload)); j++ {
			out = append(out, payload[j]^s[j-i])
		}
	}
	s0 := ctr(0)
	for i := range tagLen {
		out = append(out, tag[i]^s0[i])
	}
	return out
}

func zeroPad(b []byte) []byte {
	if r := len(b) % 16; r != 0 {
		b = append(b, make([]byte, 16-r)...)
	}
	return b
}

func newPionCCM(t testing.TB, key []byte, tagLen, nonceLen int) cipher.AEAD {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := ccm.NewCCM(block, tagLen, nonceLen)
	if err != nil {
		t.Fatal(err)
	}
	return aead
}

// TestCCMKnownAnswers checks pion's CCM, and the reference above, against
// published vectors.
func TestCCMKnownAnswers(t *testing.T) {
	tests := []struct {
		name                   string
		key, nonce, adata, msg string
		ciphertextAndTag       string
		tagLen                 int
	}{
		// NIST SP 800-38C Appendix C, Example 3: 12-byte nonce, 8-byte tag.
		{"SP800-38C example 3", "404142434445464748494a4b4c4d4e4f", "101112131415161718191a1b",
			"000102030405060708090a0b0c0d0e0f10111213", "202122232425262728292a2b2c2d2e2f3031323334353637",
			"e3b201a9f5b71a7a9b1ceaeccd97e70b6176aad9a4428aa5" + "484392fbc1b09951", 8},
		// Project Wycheproof aes_ccm_test.json, group ivSize 96 / tagSize 128
		// (AEAD_AES_128_CCM exactly): tcId 2, 9, 12, 29.
		{"wycheproof tc2", "384ea416ac3c2f51a76e7d8226346d4e", "b30c084727ad1c592ac21d12", "", "35",
			"d7" + "6be3fd13b7065afc19e3b8a3b96b39fb", 16},
		{"wycheproof tc9", "e12260fcd355a51a0d01bb1f6fa538c2", "5dfc37366f5688275147d3f9", "",
			"d902deeab175c008329a33bfaccd5c0eb3a6a152a1510e7db04fa0aff7ce4288530db6a80fa7fea582aa7d46d7d56e708d2bb0c5edd3d26648d336c3620ea55e",
			"0de44fe54b84359365054a6997478f87b6b761d127a651f7b8003d25e762f7f81cf84b3a471a9377bb388c74c08be894eff10e46365bf76820b7168623966be6" +
				"bb8e261879d6f639aa42d2d50ed750b8", 16},
		{"wycheproof tc12", "9415f925bcb41dc25e86c826dbc8bf68", "bdffaa763b916ff0ee3f3ce4", "705d676cd8a94451",
			"feb36167eafc02c8e2bd6e13817686ba", "08db327a88be7b48f430fd7bfccdf502" + "b7c249f810adacf99abded1f3b9130f2", 16},
		{"wycheproof tc29", "20bbf74c1e63982c472c4743569e4c84", "459fc7c004bf46323a02d846",
			"4f2285ce3dafa528c694a5272d3b7b929097db398772653bd9bbbdb3b2c8e1", "6db50992e8fbbee15d4979d3e322dacd",
			"8703e44697138c58532d97ee99231d94" + "f14c2f39a4871a4a16c42f6fe878deef", 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, nonce, adata, msg, want := unhex(tt.key), unhex(tt.nonce), unhex(tt.adata), unhex(tt.msg), unhex(tt.ciphertextAndTag)
			if got := refCCM(key, nonce, adata, msg, tt.tagLen); !bytes.Equal(got, want) {
				t.Errorf("reference CCM\n got %x\nwant %x", got, want)
			}
			aead := newPionCCM(t, key, tt.tagLen, len(nonce))
			if got := aead.Seal(nil, nonce, msg, adata); !bytes.Equal(got, want) {
				t.Errorf("pion CCM Seal\n got %x\nwant %x", got, want)
			}
			got, err := aead.Open(nil, nonce, want, adata)
			if err != nil || !bytes.Equal(got, msg) {
				t.Errorf("pion CCM Open = %x, %v; want %x", got, err, msg)
			}
			bad := bytes.Clone(want)
			bad[len(bad)-1] ^= 1
			if _, err := aead.Open(nil, nonce, bad, adata); err == nil {
				t.Error("pion CCM Open accepted a modified tag")
			}
		})
	}
}

// TestCCMAgainstReference compares pion's CCM with the reference for the
// ticket parameters over many lengths, including the AAD lengths tickets use.
func TestCCMAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	fill := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	for i := range 300 {
		key, nonce := fill(KeySize), fill(NonceSize)
		adata := fill(i % 40)
		msg := fill(i)
		want := refCCM(key, nonce, adata, msg, TagSize)
		aead := newPionCCM(t, key, TagSize, NonceSize)
		if got := aead.Seal(nil, nonce, msg, adata); !bytes.Equal(got, want) {
			t.Fatalf("len %d aad %d: pion\n%x\nreference\n%x", len(msg), len(adata), got, want)
		}
	}
}
