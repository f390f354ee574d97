package negotiation

import (
	"errors"
	"fmt"
)

// ErrNotOffered is wrapped by CheckSelection's error: the server selected a
// type the client did not offer, and the client must abort with
// illegal_parameter.
var ErrNotOffered = errors.New("negotiation: selected resumption type was not offered")

// Policy lists the resumption types one side allows, in that side's order of
// preference. For a client it is the offered list; for a server only the set
// matters, since Select follows the client's order. A nil or empty Policy means
// "none only". None is always acceptable, whether listed or not; a client that
// lists None before other types tells the server it prefers no resumption to
// those types.
type Policy []Type

// Allows reports whether p permits t. None is always allowed.
func (p Policy) Allows(t Type) bool {
	if t == None {
		return true
	}
	for _, x := range p {
		if x == t {
			return true
		}
	}
	return false
}

// Validate reports an error if p holds an unknown value or a duplicate.
func (p Policy) Validate() error {
	var seen [256]bool
	for i, t := range p {
		if !t.known() {
			return fmt.Errorf("negotiation: policy %s: item %d: %s is not a known resumption type", FormatList(p), i+1, t)
		}
		if seen[t] {
			return fmt.Errorf("negotiation: policy %s: item %d: duplicate %s", FormatList(p), i+1, t)
		}
		seen[t] = true
	}
	return nil
}

// Select is the server's rule: the first type in the client's order that the
// server policy allows, or None when nothing fits; the server's own order
// does not matter.
// Unknown offered values are skipped; an offered None ends the search with None
// (None is always acceptable).
func Select(offered []Type, server Policy) Type {
	for _, t := range offered {
		if !t.known() {
			continue
		}
		if server.Allows(t) {
			return t
		}
	}
	return None
}

// CheckSelection is the client's check of a ServerHello: selected must be a
// known type the client offered, or None, which is always acceptable.
// Otherwise the error wraps ErrNotOffered and the engine aborts with
// illegal_parameter.
func CheckSelection(offered []Type, selected Type) error {
	if selected == None {
		return nil
	}
	if selected.known() {
		for _, t := range offered {
			if t == selected {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: server selected %s, client offered [%s]", ErrNotOffered, selected, FormatList(offered))
}
