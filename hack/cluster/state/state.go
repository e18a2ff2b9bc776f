// Package state is what `hack/cluster up` records about the cluster it
// started, in DIR/cluster.json: hack/cluster reads it to stop or enter the
// cluster, and the real-node suite (test/realnode) to reach it.
package state

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// File is the state's name in the cluster's directory.
const File = "cluster.json"

// Dir is the cluster's directory: $HEROKUNIX_CLUSTER_DIR, by default
// /var/tmp/herokunix-cluster.
func Dir() string {
	if d := os.Getenv("HEROKUNIX_CLUSTER_DIR"); d != "" {
		return d
	}
	return "/var/tmp/herokunix-cluster"
}

// State is a started cluster.
type State struct {
	Dir        string `json:"dir"`
	HolderPID  int    `json:"holderPID"`
	NodeIP     string `json:"nodeIP"`
	Kubeconfig string `json:"kubeconfig"`
	Containerd string `json:"containerdAddress"`
	AuditLog   string `json:"auditLog"`
}

// Read reads the state in dir; with no cluster started there, the error
// is an os.ErrNotExist.
func Read(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, File))
	if err != nil {
		return nil, fmt.Errorf("reading the cluster's state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, File), err)
	}
	return &s, nil
}

// Write records s in dir.
func Write(dir string, s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, File), b, 0o644)
}
