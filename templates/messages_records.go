package templates

// recordsMessages are the texts of the records area: category names and the printable extract.
var recordsMessages = map[string]Msg{
	"category.allergies":     {"Allergies et intolérances", "Allergies and intolerances"},
	"category.treatments":    {"Traitements", "Treatments"},
	"category.results":       {"Résultats d'examens", "Exam results"},
	"category.conditions":    {"Problèmes de santé", "Conditions"},
	"category.procedures":    {"Actes et interventions", "Procedures"},
	"category.immunizations": {"Vaccinations", "Immunizations"},
	"category.documents":     {"Documents", "Documents"},
	"category.encounters":    {"Consultations et séjours", "Encounters"},

	"extract.title":   {"Extrait de dossier médical", "Health record extract"},
	"extract.entries": {"Éléments", "Entries"},
	"extract.none":    {"Aucun élément dans le périmètre approuvé.", "No entry in the approved scope."},
	"extract.nodate":  {"sans date", "no date"},
	"extract.foot": {
		"Fin de l'extrait de la demande %s. Empreinte du manifeste signé : %s.",
		"End of the extract of request %s. Digest of the signed manifest: %s.",
	},
	"extract.wm.title": {
		"Document confidentiel, remis à usage unique au destinataire nommé ci-dessous. Ne pas diffuser.",
		"Confidential document, released once to the recipient named below. Do not pass on.",
	},
	"extract.wm.short": {
		"Confidentiel · demande %s · destinataire %s · expire le %s · manifeste %s",
		"Confidential · request %s · recipient %s · expires %s · manifest %s",
	},
	"extract.wm.request":         {"Demande", "Request"},
	"extract.wm.decision":        {"Décision", "Decision"},
	"extract.wm.requester":       {"Demandeur", "Requester"},
	"extract.wm.purpose":         {"Motif", "Purpose"},
	"extract.wm.recipient":       {"Destinataire", "Recipient"},
	"extract.wm.expiry":          {"Expiration", "Expiry"},
	"extract.wm.digest":          {"Empreinte du manifeste", "Manifest digest"},
	"extract.patient.name":       {"Patient", "Patient"},
	"extract.patient.birthdate":  {"Date de naissance", "Birth date"},
	"extract.patient.gender":     {"Sexe", "Gender"},
	"extract.patient.identifier": {"Identifiant", "Identifier"},
	"extract.col.date":           {"Date", "Date"},
	"extract.col.what":           {"Élément", "Entry"},
	"extract.col.value":          {"Valeur", "Value"},
	"extract.gender.male":        {"masculin", "male"},
	"extract.gender.female":      {"féminin", "female"},
	"extract.gender.other":       {"autre", "other"},
	"extract.gender.unknown":     {"inconnu", "unknown"},
}
