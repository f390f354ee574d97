package negotiation

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

var allKnown = []Type{None, SessionID, SessionTicket, ClientState}

// subsets returns all 16 subsets of allKnown as policies, in allKnown order.
func subsets() []Policy {
	var out []Policy
	for mask := 0; mask < 1<<len(allKnown); mask++ {
		p := Policy{}
		for i, t := range allKnown {
			if mask&(1<<i) != 0 {
				p = append(p, t)
			}
		}
		out = append(out, p)
	}
	return out
}

// orders returns every non-empty ordered list of distinct known types (64).
func orders() [][]Type {
	var out [][]Type
	var grow func(prefix []Type)
	grow = func(prefix []Type) {
		if len(prefix) > 0 {
			out = append(out, slices.Clone(prefix))
		}
		for _, t := range allKnown {
			if !slices.Contains(prefix, t) {
				grow(append(prefix, t))
			}
		}
	}
	grow(nil)
	return out
}

// allowedSet is the map-based reading of a server policy: the listed types
// plus None, which is always acceptable.
func allowedSet(p Policy) map[Type]bool {
	m := map[Type]bool{None: true}
	for _, t := range p {
		m[t] = true
	}
	return m
}

func TestSelectSingleOfferedEverySubset(t *testing.T) {
	subs := subsets()
	if len(subs) != 16 {
		t.Fatalf("got %d subsets, want 16", len(subs))
	}
	for _, offered := range allKnown {
		for _, server := range subs {
			want := None
			if allowedSet(server)[offered] {
				want = offered
			}
			if got := Select([]Type{offered}, server); got != want {
				t.Errorf("Select([%s], server [%s]) = %s, want %s", offered, FormatList(server), got, want)
			}
			// The server's own order must not matter.
			rev := slices.Clone(server)
			slices.Reverse(rev)
			if got := Select([]Type{offered}, rev); got != want {
				t.Errorf("Select([%s], server [%s]) = %s, want %s", offered, FormatList(rev), got, want)
			}
		}
	}
}

func TestSelectEveryOrderEverySubset(t *testing.T) {
	ords := orders()
	if len(ords) != 4+12+24+24 {
		t.Fatalf("got %d orders, want 64", len(ords))
	}
	for _, offered := range ords {
		for _, server := range subsets() {
			// Independent formulation: among the acceptable types, the one
			// with the smallest position in the client's list wins; None if
			// no acceptable type was offered.
			allowed := allowedSet(server)
			want, bestPos := None, len(offered)
			for typ := range allowed {
				if pos := slices.Index(offered, typ); pos >= 0 && pos < bestPos {
					want, bestPos = typ, pos
				}
			}
			if got := Select(offered, server); got != want {
				t.Errorf("Select([%s], server [%s]) = %s, want %s", FormatList(offered), FormatList(server), got, want)
			}
			if err := CheckSelection(offered, Select(offered, server)); err != nil {
				t.Errorf("CheckSelection rejects Select's own answer for [%s] / [%s]: %v", FormatList(offered), FormatList(server), err)
			}
		}
	}
}

func TestSelectHandWritten(t *testing.T) {
	tests := []struct {
		name    string
		offered []Type
		server  Policy
		want    Type
	}{
		{"client order wins over server order", []Type{SessionTicket, SessionID}, Policy{SessionID, SessionTicket}, SessionTicket},
		{"client order wins, reversed", []Type{SessionID, SessionTicket}, Policy{SessionTicket, SessionID}, SessionID},
		{"memory-starved server takes ticket", []Type{ClientState, SessionID, SessionTicket}, Policy{SessionTicket}, SessionTicket},
		{"stateless client, stateful server", []Type{ClientState, SessionTicket}, Policy{ClientState, SessionID}, ClientState},
		{"nothing fits", []Type{ClientState, SessionID}, Policy{SessionTicket}, None},
		{"none offered first cuts the list", []Type{None, SessionID}, Policy{SessionID}, None},
		{"none offered in the middle", []Type{SessionTicket, None, SessionID}, Policy{SessionID}, None},
		{"none offered last", []Type{ClientState, SessionID, None}, Policy{SessionID}, SessionID},
		{"nil server policy", []Type{SessionID, SessionTicket, ClientState}, nil, None},
		{"empty server policy", []Type{SessionTicket}, Policy{}, None},
		{"server allows none only", []Type{SessionTicket, SessionID}, Policy{None}, None},
		{"nil offered", nil, Policy{SessionID, SessionTicket, ClientState}, None},
		{"unknown offered skipped", []Type{7, 200, SessionTicket}, Policy{SessionTicket}, SessionTicket},
		{"unknown offered skipped even if server lists it", []Type{7, SessionID}, Policy{7, SessionID}, SessionID},
		{"only unknown offered", []Type{4, 255}, Policy{4, 255, SessionID}, None},
		{"all four, server allows all", []Type{ClientState, SessionTicket, SessionID, None}, Policy{None, SessionID, SessionTicket, ClientState}, ClientState},
	}
	for _, tt := range tests {
		if got := Select(tt.offered, tt.server); got != tt.want {
			t.Errorf("%s: Select([%s], [%s]) = %s, want %s", tt.name, FormatList(tt.offered), FormatList(tt.server), got, tt.want)
		}
	}
}

func TestPolicyAllows(t *testing.T) {
	tests := []struct {
		p    Policy
		t    Type
		want bool
	}{
		{nil, None, true},
		{nil, SessionID, false},
		{Policy{}, ClientState, false},
		{Policy{SessionTicket}, None, true},
		{Policy{SessionTicket}, SessionTicket, true},
		{Policy{SessionTicket}, SessionID, false},
		{Policy{SessionID, ClientState}, ClientState, true},
		{Policy{SessionID, ClientState}, SessionTicket, false},
		{Policy{SessionID}, 9, false},
	}
	for _, tt := range tests {
		if got := tt.p.Allows(tt.t); got != tt.want {
			t.Errorf("Policy[%s].Allows(%s) = %v, want %v", FormatList(tt.p), tt.t, got, tt.want)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		p       Policy
		wantErr string
	}{
		{nil, ""},
		{Policy{}, ""},
		{Policy{None}, ""},
		{Policy{ClientState, SessionTicket, SessionID, None}, ""},
		{Policy{SessionID, SessionID}, "item 2: duplicate session_id"},
		{Policy{None, SessionTicket, None}, "item 3: duplicate none"},
		{Policy{SessionID, 4}, "item 2: unknown(4) is not a known resumption type"},
		{Policy{255}, "item 1: unknown(255)"},
	}
	for _, tt := range tests {
		err := tt.p.Validate()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("Policy[%s].Validate() = %v, want nil", FormatList(tt.p), err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("Policy[%s].Validate() = %v, want error containing %q", FormatList(tt.p), err, tt.wantErr)
		}
	}
	// Every ParseList result is a valid policy.
	for _, o := range orders() {
		p, err := ParseList(FormatList(o))
		if err != nil {
			t.Fatal(err)
		}
		if err := Policy(p).Validate(); err != nil {
			t.Errorf("Policy[%s].Validate() = %v", FormatList(p), err)
		}
	}
}

func TestCheckSelection(t *testing.T) {
	tests := []struct {
		offered  []Type
		selected Type
		ok       bool
	}{
		{[]Type{SessionID}, SessionID, true},
		{[]Type{SessionID}, None, true},
		{nil, None, true},
		{[]Type{ClientState, SessionTicket}, SessionTicket, true},
		{[]Type{ClientState, SessionTicket}, ClientState, true},
		{[]Type{7, SessionID}, SessionID, true},
		{[]Type{SessionID}, SessionTicket, false},
		{[]Type{SessionTicket}, ClientState, false},
		{[]Type{None}, SessionID, false},
		{nil, SessionTicket, false},
		{[]Type{7, SessionID}, 7, false}, // unknown values are never a valid selection
		{[]Type{SessionID}, 200, false},
	}
	for _, tt := range tests {
		err := CheckSelection(tt.offered, tt.selected)
		if tt.ok {
			if err != nil {
				t.Errorf("CheckSelection([%s], %s) = %v, want nil", FormatList(tt.offered), tt.selected, err)
			}
			continue
		}
		if !errors.Is(err, ErrNotOffered) {
			t.Errorf("CheckSelection([%s], %s) = %v, want ErrNotOffered", FormatList(tt.offered), tt.selected, err)
			continue
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("server selected %s", tt.selected)) {
			t.Errorf("CheckSelection error %q does not name the selection", err)
		}
	}
	// Exhaustive: for every order and every known selection, the check agrees
	// with "None, or a member of the offer".
	for _, o := range orders() {
		for _, sel := range allKnown {
			want := sel == None || slices.Contains(o, sel)
			if got := CheckSelection(o, sel) == nil; got != want {
				t.Errorf("CheckSelection([%s], %s) ok=%v, want %v", FormatList(o), sel, got, want)
			}
		}
	}
}
