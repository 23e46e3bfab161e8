package ssh

import (
	"fmt"
	"regexp"
	"strings"
)

// safeWord matches strings a POSIX shell reads as one literal word.
var safeWord = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// envName matches names accepted as environment variables.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Quote returns s as one word for a POSIX shell: unchanged when it holds
// only characters with no meaning to the shell, otherwise in single quotes
// with every embedded single quote written as '\”. The empty string
// becomes ”. Nothing inside single quotes is expanded, so $(...), `...`,
// globs, spaces and newlines all arrive literally.
func Quote(s string) string {
	if s != "" && safeWord.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// QuoteArgs quotes each argument with Quote and joins them with spaces.
func QuoteArgs(args ...string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = Quote(a)
	}
	return strings.Join(q, " ")
}

// envPrefix returns "env 'K=V' ..." for the variables in keys order, or an
// error when a name is not a valid variable name.
func envPrefix(keys []string, env map[string]string) (string, error) {
	if len(keys) == 0 {
		return "", nil
	}
	var b strings.Builder
	b.WriteString("env")
	for _, k := range keys {
		if !envName.MatchString(k) {
			return "", fmt.Errorf("environment variable name %q is not valid", k)
		}
		b.WriteByte(' ')
		b.WriteString(Quote(k + "=" + env[k]))
	}
	return b.String(), nil
}
