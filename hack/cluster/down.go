package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// down stops everything up started and undoes what it changed on the
// host. Mounts, network devices, iptables rules and the pods' network
// namespaces lived only in the cluster's namespaces and go with them; the
// cgroups and kernel settings are global and are undone here.
func (c *cluster) down() error {
	s, err := c.state()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if s != nil && alive(s.HolderPID) {
		mnt := nsOf(s.HolderPID)
		ours := func(pid int) bool { return mnt != "" && nsOf(pid) == mnt }
		stop := func(pid int) {
			if pid > 0 && ours(pid) {
				terminate(pid, 15*time.Second)
			}
		}
		// The kubelet first, so it restarts nothing; then the pods'
		// processes; then the rest, containerd after its containers.
		stop(c.pid("kubelet"))
		killCgroups()
		for i := len(daemons) - 1; i >= 0; i-- {
			if daemons[i] != "kubelet" {
				stop(c.pid(daemons[i]))
			}
		}
		// Shims and anything else started inside, then the holder.
		for range 5 {
			left := 0
			for _, pid := range allPIDs() {
				if pid != s.HolderPID && pid != os.Getpid() && ours(pid) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					left++
				}
			}
			if left == 0 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		terminate(s.HolderPID, 5*time.Second)
	}
	killCgroups()
	if err := removeCgroups(); err != nil {
		return err
	}
	if err := c.restoreSysctls(); err != nil {
		return err
	}
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("removing %s: %w", c.dir, err)
	}
	logf("down; %s removed", c.dir)
	return nil
}

func nsOf(pid int) string {
	l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	return l
}

func allPIDs() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}

// terminate sends SIGTERM, then SIGKILL after grace.
func terminate(pid int, grace time.Duration) {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for alive(pid) && !zombie(pid) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if alive(pid) && !zombie(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}

// kubepodsDirs: the cgroups the kubelet made, deepest first.
func kubepodsDirs() []string {
	var dirs []string
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods*")
	for _, r := range roots {
		_ = filepath.WalkDir(r, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	return dirs
}

func killCgroups() {
	for range 20 {
		left := 0
		for _, d := range kubepodsDirs() {
			b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					left++
				}
			}
		}
		if left == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func removeCgroups() error {
	var err error
	for range 50 {
		err = nil
		for _, d := range kubepodsDirs() {
			if e := syscall.Rmdir(d); e != nil && !errors.Is(e, syscall.ENOENT) {
				err = fmt.Errorf("removing cgroup %s: %w", d, e)
			}
		}
		if err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}
