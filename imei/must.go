package imei

// MustParse is [Parse] for values known to be valid (tests, constants): it
// panics on an error, like regexp.MustCompile.
func MustParse(s string) IMEI {
	m, err := Parse(s)
	if err != nil {
		panic("imei.MustParse(" + s + "): " + err.Error())
	}
	return m
}

// MustNew is [New] for values known to be valid (tests, constants): it
// panics on an error.
func MustNew(tac, snr uint32) IMEI {
	m, err := New(tac, snr)
	if err != nil {
		panic("imei.MustNew: " + err.Error())
	}
	return m
}
