# Reads TAP (tap --reporter=tap) and prints "N passed, N failed, N skipped", counting
# each test case (a test file's direct subtests). A file that fails outside any test
# case (a crash, a failed plan) counts as one failure; a file skipped whole counts as
# one skip.
/^    (not )?ok [0-9]+/ {
  if ($0 ~ / # SKIP/) skipped++
  else if ($1 == "not") { failed++; fileFailed = 1 }
  else passed++
  next
}
/^(not )?ok [0-9]+/ {
  if ($1 == "not" && !fileFailed) failed++
  else if ($0 ~ / # SKIP/) skipped++
  fileFailed = 0
}
END { printf "%d passed, %d failed, %d skipped\n", passed, failed, skipped }
