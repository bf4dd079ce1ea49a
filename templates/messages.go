package templates

import (
	"fmt"
	"sort"
	"strings"
)

// Languages the pages speak, the first one being the default. French hospitals come first.
var Languages = []string{"fr", "en"}

// Msg is one message in every language.
type Msg struct{ FR, EN string }

// catalogs lists each area's messages; an area keeps its own var in its own file so that keys stay close to
// the pages that use them. Keys must be unique across areas (a test checks it).
var catalogs = []map[string]Msg{coreMessages, identityMessages, recordsMessages, approvalsMessages, extractsMessages,
	restrictionsMessages, emergencyMessages, historyMessages}

var coreMessages = map[string]Msg{
	"app.name":             {"Passerelle d'accès aux dossiers", "Health records gateway"},
	"app.skip":             {"Aller au contenu", "Skip to content"},
	"app.lang.switch":      {"English", "Français"},
	"app.lang.switch.code": {"en", "fr"},
	"listener.intake":      {"Demandes externes", "Remote requests"},
	"listener.console":     {"Console interne", "Internal console"},
	"intake.home.title":    {"Demander l'accès à un dossier", "Request access to a record"},
	"intake.home.lead": {
		"Ce service ne montre aucun dossier. Vous pouvez y déposer une demande d'accès : un responsable des données l'étudie et, s'il l'approuve, un extrait à usage unique vous est remis.",
		"This service shows no record. You can file an access request here: a data officer studies it and, if approved, a one-time extract is released to you.",
	},
	"console.home.title": {"Console de la passerelle", "Gateway console"},
	"console.home.lead": {
		"Réservée au réseau interne de l'établissement : revue des demandes, signature des décisions, remise des extraits, administration.",
		"Internal network only: review requests, sign decisions, hand over extracts, administer.",
	},
	"error.title":     {"Une erreur est survenue", "Something went wrong"},
	"error.400":       {"La demande est invalide.", "The request is not valid."},
	"error.403":       {"Accès refusé.", "Access denied."},
	"error.404":       {"Cette page n'existe pas.", "This page does not exist."},
	"error.405":       {"Méthode non autorisée.", "Method not allowed."},
	"error.413":       {"La demande est trop volumineuse.", "The request is too large."},
	"error.415":       {"Ce type de contenu (multipart) n'est accepté par aucune page.", "This content type (multipart) is accepted by no page."},
	"error.429":       {"Trop de tentatives. Réessayez dans quelques minutes.", "Too many attempts. Try again in a few minutes."},
	"error.500":       {"Erreur interne. Rien n'a été modifié.", "Internal error. Nothing was changed."},
	"list.pages":      {"Pages de la liste", "List pages"},
	"list.total":      {"%d en tout", "%d in all"},
	"list.next":       {"Page suivante", "Next page"},
	"list.first":      {"Première page", "First page"},
	"error.bad_json":  {"JSON refusé :", "JSON refused:"},
	"error.503":       {"Service momentanément indisponible : rien n'a été modifié. Réessayez dans quelques instants.", "Service temporarily unavailable: nothing was changed. Try again in a moment."},
	"error.requestid": {"Référence à communiquer au support", "Reference to give to support"},
	"error.back":      {"Retour à l'accueil", "Back to the home page"},
	"nav.label":       {"Navigation principale", "Main navigation"},
	"dev.banner": {
		"Mode essai : des clés logicielles sont acceptées pour les responsables des données. Ne pas utiliser avec de vraies données.",
		"Trial mode: software keys are accepted for data officers. Do not use with real data.",
	},
	"console.forbidden": {"La console n'est accessible que depuis le réseau interne.", "The console is only reachable from the internal network."},
}

// T returns the message for key in lang, formatted with args (fmt verbs). A missing key shows itself, so a
// page never silently loses a text.
func T(lang, key string, args ...any) string {
	for _, c := range catalogs {
		if m, ok := c[key]; ok {
			s := m.FR
			if lang == "en" {
				s = m.EN
			}
			if len(args) > 0 {
				return fmt.Sprintf(s, args...)
			}
			return s
		}
	}
	return "[" + key + "]"
}

// Has says whether the catalog holds key (a page falls back to a general message when a specific one is missing).
func Has(key string) bool {
	for _, c := range catalogs {
		if _, ok := c[key]; ok {
			return true
		}
	}
	return false
}

// Keys lists every key, sorted; tests use it to check the catalogs.
func Keys() []string {
	var out []string
	for _, c := range catalogs {
		for k := range c {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// MatchLanguage picks a supported language from an Accept-Language header, defaulting to French.
func MatchLanguage(acceptLanguage string) string {
	best, bestQ := Languages[0], -1.0
	for _, part := range strings.Split(acceptLanguage, ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			fmt.Sscanf(v, "%g", &q)
		}
		base, _, _ := strings.Cut(strings.ToLower(tag), "-")
		for _, l := range Languages {
			if base == l && q > bestQ {
				best, bestQ = l, q
			}
		}
	}
	return best
}

// Supported says whether lang is one of Languages.
func Supported(lang string) bool {
	for _, l := range Languages {
		if l == lang {
			return true
		}
	}
	return false
}
