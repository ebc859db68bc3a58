// One line per event on stdout: systemd puts it in the journal with the unit's name
// and a timestamp, so the line carries neither.
export function log(line: string) {
  process.stdout.write(line.replace(/\n/g, ' | ') + '\n')
}
