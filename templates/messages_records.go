package templates

// recordsMessages are the texts of the records area: category names and the printable extract.
var recordsMessages = map[string]Msg{
	"records.category.allergies":     {"Allergies et intolérances", "Allergies and intolerances"},
	"records.category.treatments":    {"Traitements", "Treatments"},
	"records.category.results":       {"Résultats d'examens", "Exam results"},
	"records.category.conditions":    {"Problèmes de santé", "Conditions"},
	"records.category.procedures":    {"Actes et interventions", "Procedures"},
	"records.category.immunizations": {"Vaccinations", "Immunizations"},
	"records.category.documents":     {"Documents", "Documents"},
	"records.category.encounters":    {"Consultations et séjours", "Encounters"},

	"records.extract.title":   {"Extrait de dossier médical", "Health record extract"},
	"records.extract.entries": {"Éléments", "Entries"},
	"records.extract.none":    {"Aucun élément dans le périmètre approuvé.", "No entry in the approved scope."},
	"records.extract.nodate":  {"sans date", "no date"},
	"records.extract.foot": {
		"Fin de l'extrait de la demande %s. Empreinte du manifeste signé : %s.",
		"End of the extract of request %s. Digest of the signed manifest: %s.",
	},
	"records.extract.wm.title": {
		"Document confidentiel, remis à usage unique au destinataire nommé ci-dessous. Ne pas diffuser.",
		"Confidential document, released once to the recipient named below. Do not pass on.",
	},
	"records.extract.wm.short": {
		"Confidentiel · demande %s · destinataire %s · expire le %s · manifeste %s",
		"Confidential · request %s · recipient %s · expires %s · manifest %s",
	},
	"records.extract.wm.request":         {"Demande", "Request"},
	"records.extract.wm.decision":        {"Décision", "Decision"},
	"records.extract.wm.requester":       {"Demandeur", "Requester"},
	"records.extract.wm.purpose":         {"Motif", "Purpose"},
	"records.extract.wm.recipient":       {"Destinataire", "Recipient"},
	"records.extract.wm.expiry":          {"Expiration", "Expiry"},
	"records.extract.wm.digest":          {"Empreinte du manifeste", "Manifest digest"},
	"records.extract.patient.name":       {"Patient", "Patient"},
	"records.extract.patient.birthdate":  {"Date de naissance", "Birth date"},
	"records.extract.patient.gender":     {"Sexe", "Gender"},
	"records.extract.patient.identifier": {"Identifiant", "Identifier"},
	"records.extract.col.date":           {"Date", "Date"},
	"records.extract.col.what":           {"Élément", "Entry"},
	"records.extract.col.value":          {"Valeur", "Value"},
	"records.extract.gender.male":        {"masculin", "male"},
	"records.extract.gender.female":      {"féminin", "female"},
	"records.extract.gender.other":       {"autre", "other"},
	"records.extract.gender.unknown":     {"inconnu", "unknown"},
}
