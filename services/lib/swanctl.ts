// swanctl's machine-readable output (`--raw`), parsed once for the lab's status and
// for the tests.

export interface ChildSa {
  name: string
  state: string
  fields: Record<string, string>
}
export interface IkeSa {
  name: string
  state: string
  fields: Record<string, string>
  children: ChildSa[]
}

/** Parse one `swanctl --list-sas --raw` output into IKE SAs with their child SAs. */
export function parseRawSas(text: string): IkeSa[] {
  const sas: IkeSa[] = []
  for (const line of text.split('\n').filter((l) => l.startsWith('list-sa event {'))) {
    const name = /^list-sa event \{(\S+) \{/.exec(line)![1]
    const childStart = line.indexOf('child-sas {')
    const ikePart = childStart >= 0 ? line.slice(0, childStart) : line
    const fields = Object.fromEntries([...ikePart.matchAll(/([\w-]+)=(\S+)/g)].map((m) => [m[1], m[2]]))
    const children: ChildSa[] = []
    if (childStart >= 0) {
      for (const m of line.slice(childStart).matchAll(/(\S+) \{(name=[^{}]*)\}/g)) {
        const f = Object.fromEntries([...m[2].matchAll(/([\w-]+)=(\[[^\]]*\]|\S+)/g)].map((x) => [x[1], x[2]]))
        children.push({ name: f.name, state: f.state, fields: f })
      }
    }
    sas.push({ name, state: fields.state, fields, children })
  }
  return sas
}
