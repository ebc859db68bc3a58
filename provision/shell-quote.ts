// Quoting a word for a POSIX shell, shared by ssh.ts (sh``, sudo) and kept-shell.ts
// (the commands it is given), which ssh.ts imports: a file of its own keeps them apart.

/** Quote one word for a POSIX shell (left bare when it is made of characters no shell reads specially). */
export function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`
}
