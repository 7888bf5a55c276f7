package policy

import "fmt"

// imeiURN checks a 15-digit IMEI (Luhn check digit included) and returns its
// RFC 7254 URN, urn:gsma:imei:TTTTTTTT-SSSSSS-C.
//
// It stands in for package imei until that package lands; then it becomes a
// call to imei.Parse(s) and (imei.IMEI).URN().
func imeiURN(s string) (string, error) {
	if len(s) != 15 {
		return "", fmt.Errorf("IMEI %q must have 15 digits (TAC, SNR, check digit), has %d characters", s, len(s))
	}
	sum := 0
	for i := 0; i < 15; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return "", fmt.Errorf("IMEI %q has a non-digit at position %d", s, i+1)
		}
		d := int(c - '0')
		if i%2 == 1 { // Luhn: double every second digit from the left of 14+1
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	if sum%10 != 0 {
		return "", fmt.Errorf("IMEI %s has a wrong check digit (Luhn)", s)
	}
	return "urn:gsma:imei:" + s[:8] + "-" + s[8:14] + "-" + s[14:], nil
}
