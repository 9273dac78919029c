// Messages of the Django admin's JavaScript that Django ships without a
// Vietnamese translation. Listed only so that makemessages (djangojs domain)
// keeps them in our catalogs; never loaded by a page.
ngettext("%s selected option not visible", "%s selected options not visible", 0);
gettext("(click to clear)");
gettext("Choose %s by selecting them and then select the \"Choose\" arrow button.");
gettext("Choose all %s");
gettext("Choose selected %s");
gettext("Friday");
gettext("Monday");
gettext("Remove %s by selecting them and then select the \"Remove\" arrow button.");
gettext("Remove all %s");
gettext("Remove selected %s");
gettext("Saturday");
gettext("Sunday");
gettext("Thursday");
gettext("Tuesday");
gettext("Type into this box to filter down the list of selected %s.");
gettext("Wednesday");
pgettext("abbrev. day Friday", "Fri");
pgettext("abbrev. day Monday", "Mon");
pgettext("abbrev. day Saturday", "Sat");
pgettext("abbrev. day Sunday", "Sun");
pgettext("abbrev. day Thursday", "Thur");
pgettext("abbrev. day Tuesday", "Tue");
pgettext("abbrev. day Wednesday", "Wed");
