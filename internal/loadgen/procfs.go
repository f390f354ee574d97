package loadgen

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of the CPU times in /proc/PID/stat (USER_HZ). It is
// 100 on every Linux architecture Go supports; reading it would take
// sysconf(_SC_CLK_TCK) through cgo.
const userHZ = 100

// Usage is what a process has used so far, from /proc.
type Usage struct {
	// CPU is user plus system time of all the process's threads.
	CPU time.Duration
	// RSS is its resident memory (VmRSS), in bytes.
	RSS int64
}

// ReadUsage reads the CPU time of process pid from /proc/PID/stat and its
// resident memory from /proc/PID/status.
func ReadUsage(pid int) (Usage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Usage{}, err
	}
	cpu, err := parseStatCPU(stat)
	if err != nil {
		return Usage{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Usage{}, err
	}
	rss, err := parseVmRSS(status)
	if err != nil {
		return Usage{}, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	return Usage{CPU: cpu, RSS: rss}, nil
}

// parseStatCPU returns utime+stime from the contents of /proc/PID/stat:
// "pid (comm) state ppid ... utime stime ...", fields 14 and 15 counted
// from 1, in USER_HZ ticks. comm may hold spaces and parentheses, so the
// fields are counted from the last ')'.
func parseStatCPU(data []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("no ')' after the command name")
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state), so utime (14) is f[11] and stime (15) f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// parseVmRSS returns the VmRSS line of /proc/PID/status ("VmRSS:   1234 kB")
// in bytes.
func parseVmRSS(data []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmRSS line %q", sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS line %q: %w", sc.Text(), err)
		}
		return kb * 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmRSS line (a zombie or kernel thread?)")
}

// RaiseFileLimit raises the soft limit on open files to the hard limit,
// since every simulated device holds a socket, and returns the new soft
// limit.
func RaiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	// A privileged process (root in CI) may raise the hard limit too:
	// 100,000 held devices need more descriptors than a default hard limit.
	if want := uint64(wantedFiles); lim.Max < want {
		raised := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			return want, nil
		}
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, err
		}
	}
	return lim.Cur, nil
}

// wantedFiles is the descriptor limit RaiseFileLimit asks for when it may:
// room for 250,000 devices and the server's sockets.
const wantedFiles = 262144
