package natsconf

// MaxNameLen is the longest room or user id accepted.
const MaxNameLen = 128

// ValidName reports whether s is a valid room or user id:
// ^[A-Za-z0-9_:-]{1,128}$. Only such names ever become NATS subject tokens,
// so no id can contain '.', '*', '>' or whitespace and widen a subscription.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// validPrefix reports whether p is usable as the subject prefix: one or more
// dot-separated tokens of name characters.
func validPrefix(p string) bool {
	if p == "" {
		return false
	}
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '.' {
			if !ValidName(p[start:i]) {
				return false
			}
			start = i + 1
		}
	}
	return true
}
