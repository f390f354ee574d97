module github.com/dtlsresume/dtlsresume

go 1.26.8

require (
	github.com/pion/dtls/v2 v2.2.12
	github.com/pion/dtls/v3 v3.1.15
	github.com/pion/transport/v5 v5.0.0
	golang.org/x/crypto v0.58.0
)

require (
	github.com/pion/logging v0.2.4 // indirect
	github.com/pion/transport/v2 v2.2.4 // indirect
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)
