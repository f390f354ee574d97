-- dtlsresume.lua: a Wireshark/tshark dissector for the session_resumption_type
-- hello extension of github.com/dtlsresume/dtlsresume. The wire format is
-- the ClientResumptionTypes and ServerResumptionType structs documented on
-- ClientOffer and ServerAnswer in negotiation/extension.go, whose codec is
-- the reference; internal/wiresharktest checks that this dissector flags
-- exactly the payloads that codec rejects.
--
-- Load it for one run:
--
--   tshark -X lua_script:tools/wireshark/dtlsresume.lua -r capture.pcapng -V
--   wireshark -X lua_script:tools/wireshark/dtlsresume.lua capture.pcapng
--
-- or copy it into Wireshark's personal plugins folder (Help > About >
-- Folders, e.g. ~/.local/lib/wireshark/plugins/) to load it always.
--
-- The extension was never assigned an ExtensionType; dtlsresume uses the
-- private-use value 0xFF42 by default (Config.ResumptionExtensionType). Set
-- another in Preferences > Protocols > DTLSRESUME, or on the command line:
--
--   tshark -X lua_script:dtlsresume.lua -o dtlsresume.codepoint:65347 ...
--
-- How it hooks in: the TLS and DTLS dissectors of Wireshark 4.0 have no
-- dissector table for hello extensions (`tshark -G dissector-tables` lists
-- none), so this is a postdissector: after (D)TLS has dissected a packet, it
-- walks the packet's fields in tree order, takes the data of every extension
-- whose type is the configured codepoint together with the type of the
-- handshake message that carries it (ClientHello 1, ServerHello 2), and
-- decodes it. It never guesses from bytes alone: only extensions the (D)TLS
-- dissector has found are decoded, in both DTLS and TLS.
--
-- Fields (usable in display filters, -T fields -e, and -Y):
--   dtlsresume.message          handshake message carrying the extension
--   dtlsresume.offered_length   bytes of the offered list (ClientHello)
--   dtlsresume.offered          each offered type: none(0), session_id(1),
--                               session_ticket(2), client_state(3)
--   dtlsresume.offered_names    the offered list by name, in order
--   dtlsresume.handle_length    length of client_state_handle
--   dtlsresume.handle           the 16-byte client_state_handle
--   dtlsresume.resume           resume_client_state (0 or 1)
--   dtlsresume.selected         the type the server selected (ServerHello)
--   dtlsresume.ticket_length    length of client_state_ticket
--   dtlsresume.ticket           the client_state ticket the server returns
-- Rule violations (the ones package negotiation answers with decode_error)
-- are marked with the expert info dtlsresume.malformed.

local proto = Proto("dtlsresume", "dtlsresume session_resumption_type")

local DEFAULT_CODEPOINT = 0xFF42
local HANDLE_SIZE = 16

proto.prefs.codepoint = Pref.uint("Extension codepoint", DEFAULT_CODEPOINT,
	"ExtensionType of session_resumption_type (decimal; dtlsresume's default is 65346 = 0xFF42). " ..
	"Both peers must use the same value.")

local type_names = {
	[0] = "none",
	[1] = "session_id",
	[2] = "session_ticket",
	[3] = "client_state",
}

local message_names = {
	[1] = "ClientHello",
	[2] = "ServerHello",
}

local resume_names = {
	[0] = "no: start a fresh session",
	[1] = "yes: return my client_state ticket and resume",
}

local f = proto.fields
f.message = ProtoField.uint8("dtlsresume.message", "Handshake message", base.DEC, message_names)
f.offered_length = ProtoField.uint8("dtlsresume.offered_length", "Offered length", base.DEC)
f.offered = ProtoField.uint8("dtlsresume.offered", "Offered type", base.DEC, type_names)
f.offered_names = ProtoField.string("dtlsresume.offered_names", "Offered")
f.handle_length = ProtoField.uint8("dtlsresume.handle_length", "Client state handle length", base.DEC)
f.handle = ProtoField.bytes("dtlsresume.handle", "Client state handle")
f.resume = ProtoField.uint8("dtlsresume.resume", "Resume client state", base.DEC, resume_names)
f.selected = ProtoField.uint8("dtlsresume.selected", "Selected type", base.DEC, type_names)
f.ticket_length = ProtoField.uint16("dtlsresume.ticket_length", "Client state ticket length", base.DEC)
f.ticket = ProtoField.bytes("dtlsresume.ticket", "Client state ticket")

local ef_malformed = ProtoExpert.new("dtlsresume.malformed", "Malformed session_resumption_type extension",
	expert.group.MALFORMED, expert.severity.ERROR)
proto.experts = { ef_malformed }

local function type_name(v)
	return type_names[v] or ("unknown(" .. v .. ")")
end

local function malformed(item, msg)
	item:add_proto_expert_info(ef_malformed, msg)
end

-- dissect_client decodes ClientResumptionTypes:
--   SessionResumptionType offered<1..2^8-1>;
--   opaque client_state_handle<0..2^8-1>;
--   uint8  resume_client_state;
local function dissect_client(r, item)
	local n = r and r:len() or 0
	if n < 1 then
		return malformed(item, "ClientResumptionTypes: offered: truncated")
	end
	local olen = r(0, 1):uint()
	item:add(f.offered_length, r(0, 1))
	if 1 + olen > n then
		return malformed(item, "ClientResumptionTypes: offered: truncated")
	end
	local names, seen, has_client_state = {}, {}, false
	for i = 1, olen do
		local tr = r(i, 1)
		local v = tr:uint()
		local ti = item:add(f.offered, tr)
		names[#names + 1] = type_name(v)
		if seen[v] then
			malformed(ti, "ClientResumptionTypes: offered: duplicate " .. type_name(v))
		end
		seen[v] = true
		if v == 3 then
			has_client_state = true
		end
	end
	if olen == 0 then
		item:add(f.offered_names, r(0, 1), "")
		malformed(item, "ClientResumptionTypes: offered: empty list")
	else
		item:add(f.offered_names, r(1, olen), table.concat(names, ","))
	end
	item:append_text(": offered " .. (olen > 0 and table.concat(names, ",") or "nothing"))

	local off = 1 + olen
	if off + 1 > n then
		return malformed(item, "ClientResumptionTypes: client_state_handle: truncated")
	end
	local hlen = r(off, 1):uint()
	local hi = item:add(f.handle_length, r(off, 1))
	off = off + 1
	if off + hlen > n then
		return malformed(item, "ClientResumptionTypes: client_state_handle: truncated")
	end
	if hlen > 0 then
		item:add(f.handle, r(off, hlen))
		item:append_text(", handle " .. r(off, hlen):bytes():tohex(true))
	end
	if hlen ~= 0 and hlen ~= HANDLE_SIZE then
		malformed(hi, "ClientResumptionTypes: client_state_handle: length " .. hlen .. ", want 0 or " .. HANDLE_SIZE)
	elseif hlen ~= 0 and not has_client_state then
		malformed(hi, "ClientResumptionTypes: client_state_handle: present but client_state not offered")
	elseif hlen == 0 and has_client_state then
		malformed(hi, "ClientResumptionTypes: client_state_handle: empty but client_state offered")
	end
	off = off + hlen

	if off + 1 > n then
		return malformed(item, "ClientResumptionTypes: resume_client_state: truncated")
	end
	local resume = r(off, 1):uint()
	local ri = item:add(f.resume, r(off, 1))
	item:append_text(", resume " .. resume)
	if resume > 1 then
		malformed(ri, "ClientResumptionTypes: resume_client_state: value " .. resume .. ", want 0 or 1")
	elseif resume == 1 and not has_client_state then
		malformed(ri, "ClientResumptionTypes: resume_client_state: 1 but client_state not offered")
	elseif resume == 1 and hlen ~= HANDLE_SIZE then
		malformed(ri, "ClientResumptionTypes: resume_client_state: 1 without a 16-byte client_state_handle")
	end
	off = off + 1
	if off < n then
		malformed(item, "ClientResumptionTypes: resume_client_state: followed by " .. (n - off) .. " trailing bytes")
	end
end

-- dissect_server decodes ServerResumptionType:
--   SessionResumptionType selected;
--   opaque client_state_ticket<0..2^16-1>;
local function dissect_server(r, item)
	local n = r and r:len() or 0
	if n < 1 then
		return malformed(item, "ServerResumptionType: selected: truncated")
	end
	local sel = r(0, 1):uint()
	local si = item:add(f.selected, r(0, 1))
	item:append_text(": selected " .. type_name(sel))
	if type_names[sel] == nil then
		malformed(si, "ServerResumptionType: selected: " .. type_name(sel) .. " is not a known type")
	end
	if n < 3 then
		return malformed(item, "ServerResumptionType: client_state_ticket: truncated")
	end
	local tlen = r(1, 2):uint()
	local ti = item:add(f.ticket_length, r(1, 2))
	if 3 + tlen > n then
		return malformed(item, "ServerResumptionType: client_state_ticket: truncated")
	end
	if tlen > 0 then
		item:add(f.ticket, r(3, tlen))
		item:append_text(", ticket of " .. tlen .. " bytes")
		if sel ~= 3 then
			malformed(ti, "ServerResumptionType: client_state_ticket: present but selected is " .. type_name(sel))
		end
	end
	if 3 + tlen < n then
		malformed(item, "ServerResumptionType: client_state_ticket: followed by " .. (n - 3 - tlen) .. " trailing bytes")
	end
end

-- Field names of the (D)TLS dissectors, by protocol prefix.
local prefixes = { "dtls", "tls" }
local field_role = {}
for _, p in ipairs(prefixes) do
	field_role[p .. ".handshake.type"] = "hs_type"
	field_role[p .. ".handshake.extension.type"] = "ext_type"
	field_role[p .. ".handshake.extension.len"] = "ext_len"
	field_role[p .. ".handshake.extension.data"] = "ext_data"
end

-- decode shows the extension_data range (nil when it is empty, anchored at
-- the extension's type field) of a handshake message of type msg.
local function decode(range, msg, tree, anchor)
	local item = tree:add(proto, range or anchor)
	item:add(f.message, msg):set_generated()
	item:append_text(" (" .. (message_names[msg] or ("handshake type " .. msg)) .. ")")
	if msg == 1 then
		dissect_client(range, item)
	elseif msg == 2 then
		dissect_server(range, item)
	else
		malformed(item, "session_resumption_type in handshake type " .. msg .. ", want ClientHello or ServerHello")
	end
end

function proto.dissector(tvb, pinfo, tree)
	local codepoint = proto.prefs.codepoint
	local hs_type = nil  -- type of the handshake message being walked
	local pending = nil  -- our extension's type field, until its data shows up
	for _, fi in ipairs({ all_field_infos() }) do
		local role = field_role[fi.name]
		if role == "hs_type" then
			hs_type = fi.value
			pending = nil
		elseif role == "ext_type" then
			pending = nil
			if fi.value == codepoint and hs_type ~= nil then
				pending = fi
			end
		elseif role == "ext_len" and pending ~= nil and fi.value == 0 then
			-- An empty extension has no data field: show it at its type.
			decode(nil, hs_type, tree, pending.range)
			pending = nil
		elseif role == "ext_data" and pending ~= nil then
			decode(fi.range, hs_type, tree)
			pending = nil
		end
	end
end

-- true: the postdissector needs every field of the packet (all_field_infos),
-- not only those named by display filters.
register_postdissector(proto, true)
