package labinit

import (
	"os"
	"path/filepath"
	"testing"

	"flightdeck/targets/lab"
)

// TestInstallKeys: the mounted keys are installed where sshd reads them,
// with the modes its strict checks demand, replacing older ones.
func TestInstallKeys(t *testing.T) {
	keys, root := t.TempDir(), t.TempDir()
	files := map[string]string{lab.HostKeyFile: "private", lab.HostKeyFile + ".pub": "public",
		lab.SSHDConfigFile: "Port 22\n", lab.AuthorizedKeysFile: "ssh-ed25519 AAAA lab\n"}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(keys, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := filepath.Join(root, "etc/ssh/sshd_config")
	os.MkdirAll(filepath.Dir(old), 0o755)
	os.WriteFile(old, []byte("stale"), 0o666)
	if err := installKeys(keys, root); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, data string
		mode       os.FileMode
	}{
		{"etc/ssh/" + lab.HostKeyFile, "private", 0o600},
		{"etc/ssh/" + lab.HostKeyFile + ".pub", "public", 0o644},
		{"etc/ssh/sshd_config", "Port 22\n", 0o644},
		{"root/.ssh/authorized_keys", "ssh-ed25519 AAAA lab\n", 0o600},
	} {
		p := filepath.Join(root, tc.path)
		b, err := os.ReadFile(p)
		st, _ := os.Stat(p)
		if err != nil || string(b) != tc.data || st.Mode().Perm() != tc.mode {
			t.Errorf("%s: %q %v mode %v; want %q mode %v", tc.path, b, err, st.Mode().Perm(), tc.data, tc.mode)
		}
	}
	if st, _ := os.Stat(filepath.Join(root, "root/.ssh")); st.Mode().Perm() != 0o700 {
		t.Errorf("root/.ssh mode %v, want 0700", st.Mode().Perm())
	}
	os.Remove(filepath.Join(keys, lab.AuthorizedKeysFile))
	if err := installKeys(keys, root); err == nil {
		t.Error("a missing authorized key was not an error")
	}
}
