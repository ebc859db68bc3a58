// `--name value` pairs of the bench tools' command lines; anything else is refused
// with the tool's usage line.
export function parseArgs(argv: string[], usage: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) throw new Error(`usage: ${usage}; got ${argv[i]}`)
    out[argv[i].slice(2)] = argv[i + 1]
  }
  return out
}
