// Templates are real files under provision/templates/, with a deliberately small
// syntax so they stay readable as the config they produce:
//   {{ name }} or {{ a.b }}            a value; a missing one is an error, never ""
//   {{#each list}} ... {{/each}}       repeat for each item; inside, {{ .field }} is
//                                      the item's field and {{ . }} the item itself
//   {{#if flag}} ... {{else}} ... {{/if}}  by truthiness (no nesting of ifs); inside
//                                      an each, {{#if .field}} tests the item
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const templateDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'templates')

export type Vars = Record<string, unknown>

export class TemplateError extends Error {}

export function render(text: string, vars: Vars, name = 'template'): string {
  const each = /\{\{#each\s+([\w.]+)\s*\}\}\n?([\s\S]*?)\{\{\/each\}\}\n?/g
  const expanded = text.replace(each, (_m, key: string, body: string) => {
    const list = lookup(vars, key, name)
    if (!Array.isArray(list)) throw new TemplateError(`${name}: {{#each ${key}}} needs a list, got ${typeof list}`)
    return list.map((item) => substitute(conditionals(body, vars, name, item), vars, name, item)).join('')
  })
  return substitute(conditionals(expanded, vars, name), vars, name)
}

function conditionals(text: string, vars: Vars, name: string, item?: unknown): string {
  const block = /\{\{#if\s+(\.?[\w.]+)\s*\}\}\n?([\s\S]*?)(?:\{\{else\}\}\n?([\s\S]*?))?\{\{\/if\}\}\n?/g
  return text.replace(block, (_m, key: string, yes: string, no: string | undefined): string => {
    const scope = key.startsWith('.') ? (item as Vars) : vars
    if (key.startsWith('.') && item === undefined)
      throw new TemplateError(`${name}: {{#if ${key}}} is only valid inside {{#each}}`)
    const k = key.startsWith('.') ? key.slice(1) : key
    let value: unknown = scope
    for (const part of k.split('.'))
      value = typeof value === 'object' && value !== null ? (value as Vars)[part] : undefined
    const truthy = Array.isArray(value) ? value.length > 0 : Boolean(value)
    return truthy ? yes : (no ?? '')
  })
}

function substitute(text: string, vars: Vars, name: string, item?: unknown): string {
  return text.replace(/\{\{\s*([\w.]+)\s*\}\}/g, (_m, key: string) => {
    let value: unknown
    if (key.startsWith('.')) {
      if (item === undefined) throw new TemplateError(`${name}: {{ ${key} }} is only valid inside {{#each}}`)
      value = key === '.' ? item : lookup(item as Vars, key.slice(1), name)
    } else {
      value = lookup(vars, key, name)
    }
    if (typeof value === 'object' && value !== null) throw new TemplateError(`${name}: {{ ${key} }} is not a scalar`)
    return String(value)
  })
}

function lookup(vars: Vars, key: string, name: string): unknown {
  let value: unknown = vars
  for (const part of key.split('.')) {
    if (typeof value !== 'object' || value === null || !(part in (value as Vars))) {
      throw new TemplateError(`${name}: no value for {{ ${key} }}`)
    }
    value = (value as Vars)[part]
  }
  if (value === undefined || value === null) throw new TemplateError(`${name}: no value for {{ ${key} }}`)
  return value
}

export function renderFile(relative: string, vars: Vars): string {
  return render(templateText(relative), vars, relative)
}

/** A template's text as it is, unrendered (to version what it produces, say). */
export function templateText(relative: string): string {
  return fs.readFileSync(path.join(templateDir, relative), 'utf8')
}
