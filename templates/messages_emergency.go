package templates

// emergencyMessages are the texts of emergency access (filing, queue, review) and of the post-hoc review list.
var emergencyMessages = map[string]Msg{
	"filing.err.categories.emergency_minimum": {
		"En urgence, seul le jeu minimal peut être demandé : allergies, traitements, problèmes actifs, vaccinations.",
		"For emergency care only the minimum dataset may be asked for: allergies, treatments, active problems, immunizations.",
	},
	"filing.hint.emergency": {
		"Soins urgents : seul le jeu minimal (allergies, traitements, problèmes actifs, vaccinations) peut être demandé ; la demande passe en tête de file.",
		"Emergency care: only the minimum dataset (allergies, treatments, active problems, immunizations) may be asked for; the request goes to the top of the queue.",
	},
	"queue.emergency": {"Urgence vitale", "Emergency"},
	"review.emergency": {
		"Accès d'urgence : jeu minimal seulement, une seule signature suffit, l'extrait expire sous %d h et un second responsable relira cette mise à disposition dans les %d h.",
		"Emergency access: minimum dataset only, one signature suffices, the extract expires within %d h, and a second officer will review this release within %d h.",
	},
	"emergency.reviews.title": {"Relecture des accès d'urgence", "Emergency access reviews"},
	"emergency.reviews.lead": {
		"Chaque mise à disposition en urgence doit être confirmée ou signalée par un autre responsable que celui qui l'a signée, avant l'échéance.",
		"Each emergency release must be confirmed or flagged, before its deadline, by another officer than the one who signed it.",
	},
	"emergency.reviews.caption": {"Les plus récentes d'abord.", "Newest first."},
	"emergency.reviews.empty":   {"Aucun accès d'urgence à relire.", "No emergency release to review."},
	"emergency.reviews.open":    {"Ouvrir la liste", "Open the list"},
	"emergency.overdue":         {"%d accès d'urgence non relu(s) dans le délai.", "%d emergency release(s) not reviewed in time."},
	"emergency.reviewed":        {"Relecture enregistrée pour la demande %s.", "Review recorded for request %s."},
	"emergency.released":        {"Mise à disposition", "Released"},
	"emergency.due":             {"Échéance de relecture", "Review due"},
	"emergency.review":          {"Relecture", "Review"},
	"emergency.state.awaiting":  {"À relire", "Awaiting review"},
	"emergency.state.overdue":   {"En retard", "Overdue"},
	"emergency.state.confirmed": {"Confirmé", "Confirmed"},
	"emergency.state.flagged":   {"Signalé", "Flagged"},
	"emergency.confirm":         {"Confirmer", "Confirm"},
	"emergency.flag":            {"Signaler", "Flag"},
	"emergency.flag.reason":     {"Motif du signalement", "Reason for flagging"},
	"emergency.err.own_release": {
		"Vous avez signé cette mise à disposition : un autre responsable doit la relire.",
		"You signed this release: another officer must review it.",
	},
	"emergency.err.already_reviewed": {"Cette mise à disposition a déjà été relue.", "This release was already reviewed."},
}
